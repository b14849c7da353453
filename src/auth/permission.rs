//! Nacos's permission model: a resource string `<namespace>:<group>:<type>/<name>`
//! (`naming/<service>`, `config/<dataId>`), an action `r` or `w`, and grants of a role
//! on a resource pattern with `r`, `w` or `rw` (Nacos `NacosRoleServiceImpl#hasPermission`).
//!
//! Two deliberate departures from Nacos, both safer and simpler:
//! * patterns are globs where only `*` is special (Nacos turns `*` into `.*` and
//!   matches the rest as a regular expression, so a `.` in a name matches anything);
//! * the public namespace is `public` on both sides: Nacos writes it `""` for configs
//!   and `public` for naming, so one grant on the console's "public" never covered both.
//!   A resource or pattern with an empty namespace is read as `public`.

/// What a request does to a resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// `r`: reads, lists, listens.
    Read,
    /// `w`: creates, changes, deletes.
    Write,
}

impl Action {
    /// Nacos's letter for it.
    pub fn letter(self) -> char {
        match self {
            Action::Read => 'r',
            Action::Write => 'w',
        }
    }
}

/// The public namespace as resources name it.
pub const PUBLIC: &str = "public";

fn namespace_part(ns: &str) -> &str {
    if ns.is_empty() { PUBLIC } else { ns }
}

fn part(value: &str) -> &str {
    if value.is_empty() { "*" } else { value }
}

/// The resource of a naming request: `<namespace>:<group>:naming/<service>`; an empty
/// part stands for every one (`*`).
pub fn naming_resource(namespace: &str, group: &str, service: &str) -> String {
    format!(
        "{}:{}:naming/{}",
        namespace_part(namespace),
        part(group),
        part(service)
    )
}

/// The resource of a config request: `<tenant>:<group>:config/<dataId>`; an empty
/// part stands for every one (`*`), the empty tenant for `public`.
pub fn config_resource(tenant: &str, group: &str, data_id: &str) -> String {
    format!(
        "{}:{}:config/{}",
        namespace_part(tenant),
        part(group),
        part(data_id)
    )
}

/// One compiled permission: a resource pattern and the actions it allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pattern: String,
    read: bool,
    write: bool,
}

impl Grant {
    /// A grant from a `permissions` row: `action` holds `r` and/or `w`.
    pub fn new(resource: &str, action: &str) -> Self {
        let pattern = match resource.strip_prefix(':') {
            Some(rest) => format!("{PUBLIC}:{rest}"),
            None => resource.to_string(),
        };
        Self {
            pattern,
            read: action.contains('r'),
            write: action.contains('w'),
        }
    }

    /// Whether it allows `action` on `resource`.
    pub fn allows(&self, resource: &str, action: Action) -> bool {
        let allowed = match action {
            Action::Read => self.read,
            Action::Write => self.write,
        };
        allowed && glob_match(&self.pattern, resource)
    }
}

impl Grant {
    /// Whether it allows anything in namespace `id` (`""` is `public`): its pattern's
    /// namespace part matches the id.
    pub fn covers_namespace(&self, id: &str) -> bool {
        let namespace = self.pattern.split(':').next().unwrap_or("");
        glob_match(namespace, namespace_part(id))
    }
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters (also
/// none) and every other character only itself. Linear in practice: the classic
/// backtracking-to-the-last-star algorithm, no regular expression.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p = pattern.as_bytes();
    let t = text.as_bytes();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_only_stars() {
        assert!(glob_match("dev:*:*", "dev:DEFAULT_GROUP:naming/stock"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*c*e", "abcde"));
        assert!(!glob_match("dev:*:*", "devx:G:config/a"));
        assert!(!glob_match("public:G:config/a.b", "public:G:config/aXb"));
        assert!(glob_match("public:G:config/a.b", "public:G:config/a.b"));
        assert!(!glob_match("abc", "ab"));
        assert!(glob_match("**", "anything"));
    }

    #[test]
    fn grants_read_the_public_namespace_alike_and_check_actions() {
        let g = Grant::new(":*:*", "r");
        assert!(g.allows(&config_resource("", "G", "d"), Action::Read));
        assert!(g.allows(&naming_resource("public", "G", "s"), Action::Read));
        assert!(!g.allows(&config_resource("", "G", "d"), Action::Write));
        let rw = Grant::new("dev:*:*", "rw");
        assert!(rw.allows(&naming_resource("dev", "", ""), Action::Write));
        assert!(!rw.allows(&naming_resource("prod", "G", "s"), Action::Read));
        assert_eq!(naming_resource("", "", ""), "public:*:naming/*");
        assert!(rw.covers_namespace("dev") && !rw.covers_namespace("prod"));
        assert!(g.covers_namespace("") && g.covers_namespace("public"));
        assert!(Grant::new("*", "r").covers_namespace("anything"));
    }
}
