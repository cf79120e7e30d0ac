//! `ema-vault`: administer an encrypted SQLite credential store (provision static secrets,
//! list, delete a subject's credentials, rotate the master key, generate a key).
//! Exit codes: 0 done, 1 the operation failed, 2 usage or I/O error.

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ema_jose::UnixTime;
use ema_vault::{
    Credential, CredentialStore, MasterKey, MasterKeys, Owner, ProviderId, Secret, SqliteStore,
    StaticSecret, StoredCredential,
};

const USAGE: &str = "\
ema-vault: administer an ema-rs credential vault (encrypted SQLite store)

USAGE:
    ema-vault gen-key --out KEY_FILE
    ema-vault put-secret --db DB --key-file KEY_FILE --tenant T --subject S --provider P [--label L]
    ema-vault list --db DB --key-file KEY_FILE --tenant T --subject S
    ema-vault revoke-all --db DB --key-file KEY_FILE --tenant T --subject S
    ema-vault rotate --db DB --key-file OLD_KEY_FILE --new-key-file NEW_KEY_FILE
    ema-vault --help | --version

COMMANDS:
    gen-key      writes a new random master key (64 hex digits) to KEY_FILE, mode 0600; refuses
                 to overwrite an existing file; prints the key id
    put-secret   stores a static secret for (T, S, P), read from standard input (never from
                 the command line); one trailing newline is removed
    list         what the subject has stored: provider, kind, status, scopes, expiry, label;
                 never a secret
    revoke-all   deletes every credential of the subject from the store. Store only: the
                 tokens are NOT revoked at the providers, which needs the server's provider
                 configuration (offboard through the MCP server to do both)
    rotate       re-wraps every record's data key under the new master key, one row per
                 transaction; safe to interrupt and run again. Afterwards give the server the
                 new key file

EXIT CODES:
    0  done
    1  the operation failed (a record does not decrypt, the database is locked, ...)
    2  usage error, or a file cannot be read
";

enum Failure {
    Usage(String),
    Failed(String),
}

struct Flags {
    values: HashMap<&'static str, String>,
}

impl Flags {
    fn parse(
        args: impl IntoIterator<Item = String>,
        allowed: &[&'static str],
    ) -> Result<Self, Failure> {
        let mut values = HashMap::new();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
                None => (arg.clone(), None),
            };
            let Some(flag) = allowed.iter().find(|f| **f == name) else {
                return Err(Failure::Usage(format!("unknown argument `{arg}`")));
            };
            let value = match inline {
                Some(value) => value,
                None => args
                    .next()
                    .ok_or_else(|| Failure::Usage(format!("`{flag}` needs a value")))?,
            };
            if values.insert(*flag, value).is_some() {
                return Err(Failure::Usage(format!("`{flag}` given twice")));
            }
        }
        Ok(Self { values })
    }

    fn required(&self, flag: &str) -> Result<&str, Failure> {
        self.values
            .get(flag)
            .map(String::as_str)
            .ok_or_else(|| Failure::Usage(format!("missing `{flag}`")))
    }

    fn optional(&self, flag: &str) -> Option<&str> {
        self.values.get(flag).map(String::as_str)
    }
}

fn key_from(path: &str) -> Result<MasterKey, Failure> {
    MasterKey::from_file(path).map_err(|e| Failure::Usage(e.to_string()))
}

fn open(db: &str, keys: MasterKeys) -> Result<SqliteStore, Failure> {
    SqliteStore::open(db, keys).map_err(|e| Failure::Failed(e.to_string()))
}

fn owner(flags: &Flags) -> Result<Owner, Failure> {
    Owner::new(flags.required("--tenant")?, flags.required("--subject")?)
        .map_err(|e| Failure::Usage(e.to_string()))
}

fn gen_key(out: &Path) -> Result<String, Failure> {
    let key = MasterKey::generate().map_err(|e| Failure::Failed(e.to_string()))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(out)
        .map_err(|e| Failure::Usage(format!("cannot create {}: {e}", out.display())))?;
    file.write_all(format!("{}\n", key.to_hex().as_str()).as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| Failure::Failed(format!("cannot write {}: {e}", out.display())))?;
    Ok(format!(
        "wrote master key {} to {}",
        key.id(),
        out.display()
    ))
}

fn put_secret(flags: &Flags) -> Result<String, Failure> {
    let owner = owner(flags)?;
    let provider = ProviderId::new(flags.required("--provider")?)
        .map_err(|e| Failure::Usage(e.to_string()))?;
    let key = key_from(flags.required("--key-file")?)?;
    let mut secret = String::new();
    std::io::stdin()
        .read_to_string(&mut secret)
        .map_err(|e| Failure::Usage(format!("cannot read the secret from standard input: {e}")))?;
    let mut secret = Secret::new(secret);
    let trimmed = secret
        .expose()
        .strip_suffix('\n')
        .map(|s| s.strip_suffix('\r').unwrap_or(s).to_owned());
    if let Some(trimmed) = trimmed {
        secret = Secret::new(trimmed);
    }
    if secret.is_empty() {
        return Err(Failure::Usage(
            "the secret read from standard input is empty".to_owned(),
        ));
    }
    let mut value = StaticSecret::new(secret);
    if let Some(label) = flags.optional("--label") {
        value = value.with_label(label);
    }
    let store = open(flags.required("--db")?, MasterKeys::new(key))?;
    let record = StoredCredential::new(Credential::Static(value), UnixTime::now());
    store
        .put(&owner.at(provider.clone()), &record)
        .map_err(|e| Failure::Failed(e.to_string()))?;
    Ok(format!(
        "stored a static secret for {}/{} at {provider}",
        owner.tenant(),
        owner.subject()
    ))
}

fn list(flags: &Flags) -> Result<String, Failure> {
    let owner = owner(flags)?;
    let key = key_from(flags.required("--key-file")?)?;
    let store = open(flags.required("--db")?, MasterKeys::new(key))?;
    let listed = store
        .list_owner(&owner)
        .map_err(|e| Failure::Failed(e.to_string()))?;
    let mut out = String::new();
    for (provider, record) in &listed {
        let info = record.info(provider);
        out.push_str(&format!(
            "{provider}\tkind={:?}\tstatus={:?}\tscopes={}\texpires_at={}\tlabel={}\tupdated_at={}\n",
            info.kind,
            info.status,
            info.scopes.join(" "),
            info.expires_at.map_or("-".to_owned(), |t| t.to_string()),
            info.label.as_deref().unwrap_or("-"),
            info.updated_at,
        ));
    }
    out.push_str(&format!("{} credential(s)", listed.len()));
    Ok(out)
}

fn revoke_all(flags: &Flags) -> Result<String, Failure> {
    let owner = owner(flags)?;
    let key = key_from(flags.required("--key-file")?)?;
    let store = open(flags.required("--db")?, MasterKeys::new(key))?;
    let deleted = store
        .delete_owner(&owner)
        .map_err(|e| Failure::Failed(e.to_string()))?;
    let mut out = String::new();
    for (provider, _) in &deleted {
        out.push_str(&format!("{provider}\tdeleted from the store\n"));
    }
    out.push_str(&format!(
        "{} credential(s) deleted; tokens were NOT revoked at the providers (this command has \
         no provider configuration: offboard through the MCP server to revoke them too)",
        deleted.len()
    ));
    Ok(out)
}

fn rotate(flags: &Flags) -> Result<String, Failure> {
    let old = key_from(flags.required("--key-file")?)?;
    let new = key_from(flags.required("--new-key-file")?)?;
    // The new key first: a rotation interrupted earlier left rows under either key.
    let store = open(
        flags.required("--db")?,
        MasterKeys::new(new.clone()).with(old),
    )?;
    let report = store
        .rotate(&new)
        .map_err(|e| Failure::Failed(e.to_string()))?;
    let usage = store
        .key_usage()
        .map_err(|e| Failure::Failed(e.to_string()))?;
    let usage: Vec<String> = usage.iter().map(|(id, n)| format!("{id}: {n}")).collect();
    Ok(format!(
        "re-wrapped {} record(s) under master key {} ({} skipped); rows per key: {}",
        report.rewrapped,
        new.id(),
        report.skipped,
        if usage.is_empty() {
            "none".to_owned()
        } else {
            usage.join(", ")
        }
    ))
}

fn run(args: Vec<String>) -> Result<String, Failure> {
    let mut args = args.into_iter();
    let command = args
        .next()
        .ok_or_else(|| Failure::Usage("missing command".to_owned()))?;
    let rest: Vec<String> = args.collect();
    if rest.iter().any(|a| a == "-h" || a == "--help") {
        return Ok(USAGE.trim_end().to_owned());
    }
    const OWNER: [&str; 4] = ["--db", "--key-file", "--tenant", "--subject"];
    match command.as_str() {
        "-h" | "--help" | "help" => Ok(USAGE.trim_end().to_owned()),
        "-V" | "--version" => Ok(format!("ema-vault {}", env!("CARGO_PKG_VERSION"))),
        "gen-key" => {
            let flags = Flags::parse(rest, &["--out"])?;
            gen_key(&PathBuf::from(flags.required("--out")?))
        }
        "put-secret" => {
            let mut allowed = OWNER.to_vec();
            allowed.extend(["--provider", "--label"]);
            put_secret(&Flags::parse(rest, &allowed)?)
        }
        "list" => list(&Flags::parse(rest, &OWNER)?),
        "revoke-all" => revoke_all(&Flags::parse(rest, &OWNER)?),
        "rotate" => rotate(&Flags::parse(
            rest,
            &["--db", "--key-file", "--new-key-file"],
        )?),
        other => Err(Failure::Usage(format!("unknown command `{other}`"))),
    }
}

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(Failure::Failed(message)) => {
            eprintln!("ema-vault: {message}");
            ExitCode::from(1)
        }
        Err(Failure::Usage(message)) => {
            eprintln!("ema-vault: {message}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
