//! Who holds which token privilege: the [`PolicyEngine`] trait and
//! [`Policies`], a static set of grants that also models DataHub's defaults.

use std::collections::{BTreeSet, HashMap};
use std::fmt::{self, Debug, Display};
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;

use async_trait::async_trait;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::urn::Urn;
use crate::BoxFuture;

/// The token privileges DataHub defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum Privilege {
    /// "Generate Personal Access Tokens": create, list and revoke one's own.
    GeneratePersonalAccessTokens,
    /// "Manage All Access Tokens": everything, for anyone (a super user).
    ManageAccessTokens,
}

impl Privilege {
    /// Both privileges.
    pub const ALL: [Privilege; 2] = [Self::GeneratePersonalAccessTokens, Self::ManageAccessTokens];

    /// DataHub's type string, e.g. `MANAGE_ACCESS_TOKENS`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GeneratePersonalAccessTokens => "GENERATE_PERSONAL_ACCESS_TOKENS",
            Self::ManageAccessTokens => "MANAGE_ACCESS_TOKENS",
        }
    }

    /// DataHub's display name, e.g. "Manage All Access Tokens".
    pub fn display_name(self) -> &'static str {
        match self {
            Self::GeneratePersonalAccessTokens => "Generate Personal Access Tokens",
            Self::ManageAccessTokens => "Manage All Access Tokens",
        }
    }
}

impl fmt::Display for Privilege {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Decides whether an actor holds a privilege. Implement it with
/// [`#[async_trait]`](crate::async_trait), as the method is declared.
#[async_trait]
pub trait PolicyEngine: Debug + Send + Sync + 'static {
    /// Whether `actor` holds `privilege`.
    async fn is_authorized(&self, actor: &Urn, privilege: Privilege) -> Result<bool>;

    /// What [`is_authorized`](Self::is_authorized) would answer, if the
    /// engine knows it at once: from memory, without I/O or waiting on
    /// anything slow. `None` (the default) means "call `is_authorized`".
    /// The service asks this first: an `async` call costs a boxed future,
    /// a few percent of creating or listing tokens in memory.
    fn is_authorized_now(&self, actor: &Urn, privilege: Privilege) -> Option<bool> {
        let _ = (actor, privilege);
        None
    }
}

// Written out rather than with `#[async_trait]`, which would box a second
// future around the inner engine's (the signature is the one it gives the
// trait's method).
impl<T: PolicyEngine + ?Sized> PolicyEngine for Arc<T> {
    fn is_authorized<'s, 'a, 'f>(
        &'s self,
        actor: &'a Urn,
        privilege: Privilege,
    ) -> BoxFuture<'f, Result<bool>>
    where
        's: 'f,
        'a: 'f,
        Self: 'f,
    {
        (**self).is_authorized(actor, privilege)
    }

    fn is_authorized_now(&self, actor: &Urn, privilege: Privilege) -> Option<bool> {
        (**self).is_authorized_now(actor, privilege)
    }
}

/// The root user DataHub creates: `urn:li:corpuser:datahub`.
pub const ROOT_USER: &str = "urn:li:corpuser:datahub";

/// A fixed set of grants: privileges for all users, per role, and per actor.
///
/// [`Policies::datahub_defaults`] reproduces DataHub's default policies;
/// [`Policies::from_json`] loads any other set:
///
/// ```json
/// {
///   "allUsers": ["GENERATE_PERSONAL_ACCESS_TOKENS"],
///   "roles": { "Admin": ["GENERATE_PERSONAL_ACCESS_TOKENS", "MANAGE_ACCESS_TOKENS"] },
///   "actors": {
///     "urn:li:corpuser:datahub": { "privileges": ["MANAGE_ACCESS_TOKENS"] },
///     "urn:li:corpuser:alice": { "roles": ["Admin"] }
///   }
/// }
/// ```
///
/// Deserializing (with serde, from any format) checks the grants as
/// [`Policies::from_json`] does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", try_from = "UncheckedPolicies")]
pub struct Policies {
    /// Privileges every user holds.
    all_users: BTreeSet<Privilege>,
    /// Named roles and their privileges.
    roles: HashMap<String, BTreeSet<Privilege>>,
    /// Grants to individual actors.
    actors: HashMap<Urn, ActorGrant>,
}

/// [`Policies`] as read, before the checks that need all of it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UncheckedPolicies {
    #[serde(default)]
    all_users: BTreeSet<Privilege>,
    #[serde(default, deserialize_with = "unique_keys")]
    roles: HashMap<String, BTreeSet<Privilege>>,
    #[serde(default, deserialize_with = "unique_keys")]
    actors: HashMap<Urn, ActorGrant>,
}

impl TryFrom<UncheckedPolicies> for Policies {
    type Error = String;

    fn try_from(read: UncheckedPolicies) -> std::result::Result<Self, String> {
        for (actor, grant) in &read.actors {
            check_actor(actor)?;
            if let Some(role) = grant.roles.iter().find(|r| !read.roles.contains_key(*r)) {
                return Err(format!(
                    "actor {actor} has role {role:?}, which is not defined under \"roles\""
                ));
            }
        }
        Ok(Policies {
            all_users: read.all_users,
            roles: read.roles,
            actors: read.actors,
        })
    }
}

/// Privileges are checked for the calling user's urn exactly: a grant to
/// any other urn would silently grant nothing.
fn check_actor(actor: &Urn) -> std::result::Result<(), String> {
    if !actor.is_user() {
        return Err(format!(
            "actor {:?} is not a user urn (urn:li:corpuser:<id>, no spaces around it); \
             only users are granted privileges here",
            actor.as_str()
        ));
    }
    Ok(())
}

/// Reads a JSON object into a map, refusing a key given twice: serde keeps
/// the last one silently, which would drop the grants of the first.
fn unique_keys<'de, D, K, V>(deserializer: D) -> std::result::Result<HashMap<K, V>, D::Error>
where
    D: Deserializer<'de>,
    K: Deserialize<'de> + Eq + Hash + Display,
    V: Deserialize<'de>,
{
    struct UniqueKeys<K, V>(PhantomData<(K, V)>);
    impl<'de, K, V> Visitor<'de> for UniqueKeys<K, V>
    where
        K: Deserialize<'de> + Eq + Hash + Display,
        V: Deserialize<'de>,
    {
        type Value = HashMap<K, V>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut entries: A) -> std::result::Result<Self::Value, A::Error> {
            let mut map = HashMap::new();
            while let Some((key, value)) = entries.next_entry::<K, V>()? {
                if map.contains_key(&key) {
                    return Err(serde::de::Error::custom(format_args!("{key} is given twice")));
                }
                map.insert(key, value);
            }
            Ok(map)
        }
    }
    deserializer.deserialize_map(UniqueKeys(PhantomData))
}

/// What one actor is granted directly.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ActorGrant {
    #[serde(default)]
    privileges: BTreeSet<Privilege>,
    #[serde(default)]
    roles: BTreeSet<String>,
}

/// DataHub's built-in role with both token privileges.
pub const ROLE_ADMIN: &str = "Admin";
/// DataHub's built-in role with "Generate Personal Access Tokens".
pub const ROLE_EDITOR: &str = "Editor";
/// DataHub's built-in role with neither token privilege.
pub const ROLE_READER: &str = "Reader";

impl Policies {
    /// No grants at all.
    pub fn none() -> Self {
        Self::default()
    }

    /// DataHub's default policies: the root user `urn:li:corpuser:datahub`
    /// holds both privileges, every user may generate personal tokens, and
    /// the roles Admin (both), Editor (generate) and Reader (neither) exist
    /// for [`with_role`](Self::with_role).
    pub fn datahub_defaults() -> Self {
        let both: BTreeSet<_> = Privilege::ALL.into();
        let generate: BTreeSet<_> = [Privilege::GeneratePersonalAccessTokens].into();
        let root = Urn::parse(ROOT_USER).expect("the root urn is valid");
        Policies {
            all_users: generate.clone(),
            roles: HashMap::from([
                (ROLE_ADMIN.to_owned(), both.clone()),
                (ROLE_EDITOR.to_owned(), generate),
                (ROLE_READER.to_owned(), BTreeSet::new()),
            ]),
            actors: HashMap::from([(
                root,
                ActorGrant {
                    privileges: both,
                    roles: BTreeSet::new(),
                },
            )]),
        }
    }

    /// Loads grants from JSON (see the type docs). Unknown keys, privileges
    /// and roles, malformed urns, and actors that are not user urns (groups,
    /// roles: they would never match a caller) are errors.
    pub fn from_json(json: &str) -> Result<Self> {
        serde_json::from_str(json).map_err(|e| Error::Config(format!("policies: {e}")))
    }

    /// Grants `privilege` to every user.
    pub fn with_all_users(mut self, privilege: Privilege) -> Self {
        self.all_users.insert(privilege);
        self
    }

    /// Grants `privilege` to `actor`, which must be a user urn (no other
    /// urn is ever a caller).
    pub fn with_grant(mut self, actor: Urn, privilege: Privilege) -> Result<Self> {
        check_actor(&actor).map_err(Error::Config)?;
        self.actors.entry(actor).or_default().privileges.insert(privilege);
        Ok(self)
    }

    /// Defines (or redefines) a role.
    pub fn with_role_definition(mut self, role: impl Into<String>, privileges: &[Privilege]) -> Self {
        self.roles
            .insert(role.into(), privileges.iter().copied().collect());
        self
    }

    /// Gives `actor` (a user urn) a defined role.
    pub fn with_role(mut self, actor: Urn, role: &str) -> Result<Self> {
        check_actor(&actor).map_err(Error::Config)?;
        if !self.roles.contains_key(role) {
            return Err(Error::Config(format!("role {role:?} is not defined")));
        }
        self.actors
            .entry(actor)
            .or_default()
            .roles
            .insert(role.to_owned());
        Ok(self)
    }

    /// Whether `actor` holds `privilege` under these grants.
    pub fn grants(&self, actor: &Urn, privilege: Privilege) -> bool {
        if self.all_users.contains(&privilege) {
            return true;
        }
        let Some(grant) = self.actors.get(actor) else {
            return false;
        };
        grant.privileges.contains(&privilege)
            || grant
                .roles
                .iter()
                .any(|role| self.roles.get(role).is_some_and(|p| p.contains(&privilege)))
    }
}

#[async_trait]
impl PolicyEngine for Policies {
    async fn is_authorized(&self, actor: &Urn, privilege: Privilege) -> Result<bool> {
        Ok(self.grants(actor, privilege))
    }

    fn is_authorized_now(&self, actor: &Urn, privilege: Privilege) -> Option<bool> {
        Some(self.grants(actor, privilege))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Privilege::*;

    fn user(id: &str) -> Urn {
        Urn::corp_user(id).unwrap()
    }

    #[test]
    fn datahub_defaults() {
        let p = Policies::datahub_defaults();
        assert!(p.grants(&user("datahub"), ManageAccessTokens));
        assert!(p.grants(&user("anyone"), GeneratePersonalAccessTokens));
        assert!(!p.grants(&user("anyone"), ManageAccessTokens));
        let p = p
            .with_role(user("admin"), ROLE_ADMIN)
            .unwrap()
            .with_role(user("ed"), ROLE_EDITOR)
            .unwrap();
        assert!(p.grants(&user("admin"), ManageAccessTokens));
        assert!(!p.grants(&user("ed"), ManageAccessTokens));
        assert!(p.clone().with_role(user("x"), "Owner").is_err());
        assert_eq!(
            Privilege::ManageAccessTokens.display_name(),
            "Manage All Access Tokens"
        );
        assert_eq!(
            Privilege::GeneratePersonalAccessTokens.display_name(),
            "Generate Personal Access Tokens"
        );
    }

    #[test]
    fn json_grants() {
        let p = Policies::from_json(
            r#"{"roles":{"Ops":["MANAGE_ACCESS_TOKENS"]},
                "actors":{"urn:li:corpuser:bob":{"privileges":["GENERATE_PERSONAL_ACCESS_TOKENS"]},
                          "urn:li:corpuser:ops":{"roles":["Ops"]}}}"#,
        )
        .unwrap();
        assert!(p.grants(&user("bob"), GeneratePersonalAccessTokens));
        assert!(!p.grants(&user("bob"), ManageAccessTokens));
        assert!(p.grants(&user("ops"), ManageAccessTokens));
        assert!(!p.grants(&user("eve"), GeneratePersonalAccessTokens));
    }

    #[test]
    fn json_errors_name_the_problem() {
        let err = |j: &str| Policies::from_json(j).unwrap_err().to_string();
        assert!(err(r#"{"allUsers":["READ_ALL"]}"#).contains("READ_ALL"));
        assert!(err(r#"{"everyone":[]}"#).contains("everyone"));
        assert!(err(r#"{"actors":{"bob":{}}}"#).contains("invalid urn"));
        assert!(err(r#"{"actors":{"urn:li:corpuser:a":{"roles":["Ghost"]}}}"#).contains("\"Ghost\""));
        let twice = err(
            r#"{"actors":{"urn:li:corpuser:a":{"roles":["Admin"]},"urn:li:corpuser:a":{}},
                            "roles":{"Admin":[]}}"#,
        );
        assert!(twice.contains("urn:li:corpuser:a is given twice"), "{twice}");
        let twice = err(r#"{"roles":{"Ops":["MANAGE_ACCESS_TOKENS"],"Ops":[]}}"#);
        assert!(twice.contains("Ops is given twice"), "{twice}");
        for never_a_caller in [
            "urn:li:corpGroup:admins",
            "urn:li:dataHubRole:Admin",
            "urn:li:CorpUser:alice",
            "urn:li:corpuser:bob ",
        ] {
            let json =
                format!(r#"{{"actors":{{"{never_a_caller}":{{"privileges":["MANAGE_ACCESS_TOKENS"]}}}}}}"#);
            let message = err(&json);
            let expected = format!("actor {never_a_caller:?} is not a user urn");
            assert!(message.contains(&expected), "{message}");
            // Every other way in checks the same: serde (any format) and the builders.
            let message = serde_json::from_str::<Policies>(&json).unwrap_err().to_string();
            assert!(message.contains(&expected), "{message}");
            let actor = Urn::parse(never_a_caller).unwrap();
            let grant = Policies::none().with_grant(actor.clone(), Privilege::ManageAccessTokens);
            assert!(grant.unwrap_err().to_string().contains(&expected));
            let role = Policies::datahub_defaults().with_role(actor, ROLE_ADMIN);
            assert!(role.unwrap_err().to_string().contains(&expected));
        }
        let ghost = r#"{"actors":{"urn:li:corpuser:a":{"roles":["Ghost"]}}}"#;
        assert!(serde_json::from_str::<Policies>(ghost).is_err());
    }

    #[test]
    fn serializing_and_reading_back_keeps_the_grants() {
        let policies = Policies::datahub_defaults()
            .with_role(user("alice"), ROLE_EDITOR)
            .unwrap();
        let json = serde_json::to_string(&policies).unwrap();
        assert_eq!(Policies::from_json(&json).unwrap(), policies);
    }
}
