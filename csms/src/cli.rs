//! The `csms` command line. Changes go through the service layer, which
//! validates them as the REST API does and records them in the audit log.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

use std::sync::Arc;

use api::auth::{self as token, Claims, Role};
use api::model as m;

use csms::authority;
use csms::clock::{Clock, SystemClock};
use csms::config::Config;
use csms::gateway::tls::{StationTrust, provider};
use csms::runtime::Node;
use csms::serve::{self as server, DEFAULT_TENANT};
use csms::services::{Actor, Operation, Services};
use csms::store::Registration;

#[derive(Debug, Parser)]
#[command(name = "csms", version, about = "Anchorpoint: OCPP 2.0.1 CSMS with its own PKI")]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// TOML configuration file.
    #[arg(long, global = true, env = "ANCHORPOINT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (database, keys, PEM files).
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// Database URL (sqlite://PATH or postgres://...).
    #[arg(long, global = true)]
    pub database_url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Print a bearer token for the REST API (last line of output).
    Token {
        #[arg(long, default_value = DEFAULT_TENANT)]
        tenant: String,
        #[arg(long, default_value = "admin")]
        role: Role,
        /// Lifetime in hours.
        #[arg(long, default_value_t = 24)]
        ttl_hours: u32,
        /// Who the token is for: the `actor` of its audit records (default: $USER, else "cli").
        #[arg(long)]
        subject: Option<String>,
    },
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage charging stations.
    #[command(subcommand)]
    Station(StationCommand),
    /// Manage issued certificates.
    #[command(subcommand)]
    Cert(CertCommand),
    /// Manage a tenant's station CAs (as `/api/v1/pki/station-ca`).
    #[command(subcommand)]
    Ca(CaCommand),
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// The tenant's station CAs as JSON lines: current root, current issuing
    /// sub-CA, then the ones they replaced.
    List {
        #[arg(long, default_value = DEFAULT_TENANT)]
        tenant: String,
    },
    /// Replace the issuing sub-CA with a new one under the same root.
    Rotate {
        #[arg(long, default_value = DEFAULT_TENANT)]
        tenant: String,
        /// Days the replaced sub-CA stays trusted while its stations move (1-3650).
        #[arg(long, default_value_t = csms::station_ca::DEFAULT_OVERLAP_DAYS)]
        overlap_days: u32,
    },
    /// Make an operator's own root or sub-CA the tenant's station CA.
    Import {
        #[arg(long, default_value = DEFAULT_TENANT)]
        tenant: String,
        /// PEM: the CA certificate, then each certificate above it up to the self-signed root.
        #[arg(long)]
        chain: PathBuf,
        /// The CA's private key, unencrypted PKCS#8 PEM (sealed at once, never printed).
        #[arg(long, required_unless_present = "pkcs11_key_label", conflicts_with = "pkcs11_key_label")]
        key: Option<PathBuf>,
        /// Label of the CA's key in the configured PKCS#11 token (`import/<tenant>/...`).
        #[arg(long)]
        pkcs11_key_label: Option<String>,
        /// Days the previous CAs stay trusted (1-3650).
        #[arg(long, default_value_t = csms::station_ca::DEFAULT_OVERLAP_DAYS)]
        overlap_days: u32,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TLS listener for OCPP.
    #[arg(long)]
    pub ocpp_addr: Option<SocketAddr>,
    /// Plain WebSocket listener for security profile 1 (off unless given).
    #[arg(long)]
    pub ocpp_plain_addr: Option<SocketAddr>,
    /// HTTP listener for health, metrics and the API.
    #[arg(long)]
    pub api_addr: Option<SocketAddr>,
    /// Host names (and IP addresses) for the server certificate, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub server_names: Option<Vec<String>>,
    /// Listener of its own for /metrics, without a token (keep it on a private
    /// network); off unless given. On the API listener /metrics needs a platform-admin token.
    #[arg(long)]
    pub metrics_addr: Option<SocketAddr>,
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant and its station CA.
    Add {
        name: String,
        /// Organisation name, used as O in station certificates.
        #[arg(long)]
        org: String,
        /// The tenant's own OCPP host name: it gets its own CSMS root, and the
        /// server presents a certificate for this name to clients asking for it (SNI).
        #[arg(long)]
        hostname: Option<String>,
    },
    /// List tenants.
    List,
}

#[derive(Debug, Subcommand)]
pub enum StationCommand {
    /// Register a station.
    Add {
        id: String,
        /// Security profile: 1 (Basic, plain), 2 (Basic over TLS), 3 (mutual TLS).
        #[arg(long)]
        profile: u8,
        /// HTTP Basic password (profiles 1 and 2), 16-40 characters.
        #[arg(long, env = "ANCHORPOINT_STATION_PASSWORD")]
        password: Option<String>,
        #[arg(long, default_value = DEFAULT_TENANT)]
        tenant: String,
        /// How the station's BootNotification is answered.
        #[arg(long, default_value = "accepted", value_parser = parse_registration)]
        registration: Registration,
        #[arg(long)]
        description: Option<String>,
    },
    /// Change a station's settings.
    Update {
        id: String,
        /// Security profile: 1, 2 or 3.
        #[arg(long)]
        profile: Option<u8>,
        #[arg(long, env = "ANCHORPOINT_STATION_PASSWORD")]
        password: Option<String>,
        #[arg(long, value_parser = parse_registration)]
        registration: Option<Registration>,
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        #[arg(long)]
        disable: bool,
    },
    /// Show a station as JSON.
    Show { id: String },
    /// List a tenant's stations as JSON lines.
    List {
        #[arg(long, default_value = DEFAULT_TENANT)]
        tenant: String,
    },
    /// Sign a station's CSR (manufacturing-time enrollment); prints the PEM chain.
    Enroll {
        id: String,
        /// PEM PKCS#10 request, subject CN = station id.
        #[arg(long)]
        csr: PathBuf,
        /// Validity in days (default from configuration).
        #[arg(long)]
        days: Option<u32>,
    },
}

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Revoke a certificate; stations presenting it are refused.
    Revoke {
        /// Serial number, hex.
        serial: String,
        #[arg(long, default_value = DEFAULT_TENANT)]
        tenant: String,
        /// RFC 5280 reason: unspecified, keyCompromise, cACompromise, affiliationChanged,
        /// superseded, cessationOfOperation, certificateHold, privilegeWithdrawn.
        #[arg(long, default_value = "unspecified")]
        reason: pki::RevocationReason,
    },
}

fn parse_registration(s: &str) -> Result<Registration, String> {
    s.parse()
}

fn config_from(global: &Global) -> anyhow::Result<Config> {
    let mut cfg = Config::load(global.config.as_deref())?;
    if let Some(d) = &global.data_dir {
        cfg.data_dir = d.clone();
    }
    if let Some(u) = &global.database_url {
        cfg.database_url = Some(u.clone());
    }
    Ok(cfg)
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut config = config_from(&cli.global)?;
    let clock = SystemClock;
    match cli.command {
        Command::Serve(args) => {
            if let Some(a) = args.ocpp_addr {
                config.ocpp_addr = a;
            }
            if let Some(a) = args.ocpp_plain_addr {
                config.ocpp_plain_addr = Some(a);
            }
            if let Some(a) = args.api_addr {
                config.api_addr = a;
            }
            if let Some(n) = args.server_names {
                config.server_names = n;
            }
            if let Some(a) = args.metrics_addr {
                config.metrics_addr = Some(a);
            }
            Ok(server::serve(config).await?)
        }
        Command::Token { tenant, role, ttl_hours, subject } => {
            if let Some(s) = &subject
                && (s.is_empty() || s.chars().count() > 64 || s.chars().any(char::is_control))
            {
                bail!("--subject must be 1-64 printable characters");
            }
            let opened = server::open(config, &clock).await?;
            if role != Role::PlatformAdmin && opened.store.tenant(&tenant).await?.is_none() {
                bail!("unknown tenant '{tenant}'");
            }
            let now = clock.now().unix_timestamp();
            let claims = Claims {
                iss: token::ISSUER.into(),
                sub: subject.unwrap_or_else(|| std::env::var("USER").unwrap_or_else(|_| "cli".into())),
                tenant,
                role,
                iat: now,
                exp: now + i64::from(ttl_hours) * 3600,
            };
            let auth = csms::authority::jwt_authenticator(
                &opened.store,
                &opened.secrets,
                opened.config.jwt_algorithm,
                clock.now_millis(),
            )
            .await?;
            println!("{}", auth.mint(&claims)?);
            Ok(())
        }
        Command::Tenant(cmd) => {
            let (opened, services) = services(config, &clock).await?;
            match cmd {
                TenantCommand::Add { name, org, hostname } => {
                    let op = Operation { tenant: None, method: "POST", path: "/api/v1/tenants".into(), ok_status: 201 };
                    let request = m::NewTenant { name, organization_name: org, ocpp_hostname: hostname };
                    let t = services.audited(&actor(), op, services.create_tenant(request)).await?;
                    println!("{}", serde_json::to_string(&t)?);
                }
                TenantCommand::List => {
                    for t in opened.store.tenants().await? {
                        println!("{}", serde_json::to_string(&t)?);
                    }
                }
            }
            Ok(())
        }
        Command::Station(cmd) => station(cmd, config, &clock).await,
        Command::Ca(cmd) => ca(cmd, config, &clock).await,
        Command::Cert(CertCommand::Revoke { serial, tenant, reason }) => {
            let (_, services) = services(config, &clock).await?;
            let op = Operation {
                tenant: Some(tenant.clone()),
                method: "POST",
                path: format!("/api/v1/certificates/{}/revoke", csms::services::printable(&serial)),
                ok_status: 200,
            };
            let rec = services.audited(&actor(), op, services.revoke_certificate(&tenant, &serial, reason)).await?;
            println!("revoked {}", rec.serial_hex);
            Ok(())
        }
    }
}

/// Whoever runs this command, as the audit log names them.
fn actor() -> Actor {
    Actor::cli(std::env::var("USER").ok().as_deref())
}

/// Records a change refused before it could start, and returns the refusal.
async fn refused(services: &Services, op: Operation, e: csms::error::Error) -> anyhow::Error {
    match services.audited(&actor(), op, async { Err::<(), _>(e) }).await {
        Err(e) => e.into(),
        Ok(()) => anyhow::anyhow!("refused"),
    }
}

/// The service layer over the opened data directory, as the server has it
/// (no stations are connected to this process).
async fn services(config: Config, clock: &SystemClock) -> anyhow::Result<(server::Opened, Arc<Services>)> {
    let mut opened = server::open(config, clock).await?;
    opened.config = server::adopt_public_url(opened.config, &opened.store).await?;
    let node = Node::new(
        opened.config.clone(),
        opened.store.clone(),
        Arc::new(*clock),
        opened.keys.clone(),
        Arc::new(StationTrust::new(provider())),
        None,
    )?;
    let services = node.services.clone();
    Ok((opened, services))
}

async fn ca(cmd: CaCommand, config: Config, clock: &SystemClock) -> anyhow::Result<()> {
    use csms::services::ImportKey;
    let (opened, services) = services(config, clock).await?;
    let tenant_id = match &cmd {
        CaCommand::List { tenant } | CaCommand::Rotate { tenant, .. } | CaCommand::Import { tenant, .. } => tenant,
    };
    let op = |tenant: Option<&str>, what: &str| Operation {
        tenant: tenant.map(str::to_owned),
        method: "POST",
        path: format!("/api/v1/pki/station-ca/{what}"),
        ok_status: 200,
    };
    let tenant = match (&cmd, services.own_tenant(tenant_id).await) {
        (_, Ok(t)) => t,
        (CaCommand::List { .. }, Err(e)) => return Err(e.into()),
        // A change refused for want of a tenant is on record too (the platform's log).
        (CaCommand::Rotate { .. }, Err(e)) => return Err(refused(&services, op(None, "rotate"), e).await),
        (CaCommand::Import { .. }, Err(e)) => return Err(refused(&services, op(None, "import"), e).await),
    };
    let op = |what: &str| op(Some(&tenant.id), what);
    match &cmd {
        CaCommand::List { .. } => {}
        CaCommand::Rotate { overlap_days, .. } => {
            services
                .audited(&actor(), op("rotate"), services.rotate_station_ca(&tenant.id, Some(*overlap_days)))
                .await?;
        }
        CaCommand::Import { chain, key, pkcs11_key_label, overlap_days, .. } => {
            let chain = std::fs::read_to_string(chain).with_context(|| format!("reading {}", chain.display()))?;
            let key = match (key, pkcs11_key_label) {
                (Some(path), _) => ImportKey::Pem(
                    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
                ),
                (None, Some(label)) => ImportKey::Pkcs11Label(label.clone()),
                (None, None) => bail!("give --key or --pkcs11-key-label"),
            };
            let import = services.import_station_ca(&tenant.id, &chain, key, Some(*overlap_days));
            services.audited(&actor(), op("import"), import).await?;
        }
    }
    // A running server trusts the new anchors at its next 15-second refresh.
    let base = opened.config.public_url();
    for c in services.station_cas(&tenant.id).await? {
        let crl = (!c.root).then(|| authority::revocation_endpoints(&base, &tenant.id, &c.id).crl_url).flatten();
        let line = serde_json::json!({
            "id": c.id,
            "role": if c.root { "root" } else { "issuing" },
            "current": c.current,
            "subject": format!("CN={}, O={}", c.info.subject_cn.clone().unwrap_or_default(), c.info.subject_o.clone().unwrap_or_default()),
            "notAfter": c.info.not_after.unix_timestamp(),
            "replacedAt": c.row.replaced_at,
            "trustedUntil": c.row.trusted_until,
            "crlUrl": crl,
            "hsm": c.hsm(),
            "keyWithOperator": c.key_with_operator(),
        });
        println!("{line}");
    }
    Ok(())
}

fn registration(r: Registration) -> m::Registration {
    match r {
        Registration::Accepted => m::Registration::Accepted,
        Registration::Pending => m::Registration::Pending,
        Registration::Rejected => m::Registration::Rejected,
    }
}

async fn station(cmd: StationCommand, config: Config, clock: &SystemClock) -> anyhow::Result<()> {
    let (opened, services) = services(config, clock).await?;
    let store = &opened.store;
    // The tenant of an existing station (the command line acts for the platform);
    // a change to a station that does not exist is refused on the platform's record.
    let services_ref = &services;
    let tenant_of = |id: String, op: Operation| async move {
        match store.station_tenant(&id).await? {
            Some(tenant) => Ok::<_, anyhow::Error>(tenant),
            None => Err(refused(services_ref, op, csms::error::Error::NotFound { what: "station", id }).await),
        }
    };
    let path = |id: &str, rest: &str| format!("/api/v1/stations/{}{rest}", csms::services::printable(id));
    match cmd {
        StationCommand::Add { id, profile, password, tenant, registration: reg, description } => {
            let op = Operation {
                tenant: Some(tenant.clone()),
                method: "POST",
                path: "/api/v1/stations".into(),
                ok_status: 201,
            };
            let request = m::NewStation {
                id,
                security_profile: profile,
                password,
                registration: Some(registration(reg)),
                description,
                tags: None,
            };
            let s = services.audited(&actor(), op, services.create_station(&tenant, request)).await?;
            println!("{}", serde_json::to_string(&s)?);
        }
        StationCommand::Update { id, profile, password, registration: reg, enable, disable } => {
            let op =
                |tenant: Option<String>| Operation { tenant, method: "PATCH", path: path(&id, ""), ok_status: 200 };
            let tenant = tenant_of(id.clone(), op(None)).await?;
            let enabled = if enable {
                Some(true)
            } else if disable {
                Some(false)
            } else {
                None
            };
            let patch = m::StationPatch {
                security_profile: profile,
                password,
                registration: reg.map(registration),
                enabled,
                description: None,
                tags: None,
            };
            let s = services
                .audited(&actor(), op(Some(tenant.clone())), services.update_station(&tenant, &id, patch))
                .await?;
            println!("{}", serde_json::to_string(&s)?);
        }
        StationCommand::Show { id } => {
            let not_found = || format!("station '{id}' not found");
            let tenant = store.station_tenant(&id).await?.with_context(not_found)?;
            let s = store.station(&tenant, &id).await?.with_context(not_found)?;
            let connectors = store.connector_statuses(&s.tenant_id, &id).await?;
            let mut v = serde_json::to_value(&s)?;
            v["connectors"] = serde_json::to_value(connectors)?;
            println!("{v}");
        }
        StationCommand::List { tenant } => {
            for s in store.stations(&tenant).await? {
                println!("{}", serde_json::to_string(&s)?);
            }
        }
        StationCommand::Enroll { id, csr, days } => {
            let pem = std::fs::read_to_string(&csr).with_context(|| format!("reading {}", csr.display()))?;
            let op = |tenant: Option<String>| Operation {
                tenant,
                method: "POST",
                path: path(&id, "/certificates"),
                ok_status: 201,
            };
            let tenant = tenant_of(id.clone(), op(None)).await?;
            let request = m::EnrollRequest { csr: pem, validity_days: days };
            let (chain, rec) =
                services.audited(&actor(), op(Some(tenant.clone())), services.enroll(&tenant, &id, request)).await?;
            eprintln!("issued certificate serial {} to {id}, valid until {}", rec.serial_hex, rec.not_after);
            print!("{chain}");
        }
    }
    Ok(())
}
