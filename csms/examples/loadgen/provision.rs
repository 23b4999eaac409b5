//! The fleet: N stations registered in the server's store, each with its own
//! key and a certificate from the tenant's station CA (profile 3), or with a
//! password the CSMS could have generated (profile 2: stored as the keyed
//! verifier that A01's generated passwords get; no certificate record).
//!
//! Keys and chains are kept in `loadgen-keys-<prefix>.bin` in the data
//! directory (one file per prefix, so two fleets can share a database), so a
//! second run against the same data directory (and database) skips the work;
//! a larger fleet adds only the stations missing. Keys are generated and
//! certificates signed on every core; stations and certificate records are
//! inserted in transactions of [`BATCH`].

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use csms::authority::{self, STATION_CA, STATION_ROOT};
use csms::store::{CertificateRecord, NewStation, Registration, StationWrite, Store};

const MAGIC: &[u8; 12] = b"APLOADKEYS2\n";
const BATCH: usize = 2000;
const TENANT: &str = "default";

/// One station's identity as the tool connects with it.
pub struct Creds {
    pub id: String,
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivatePkcs8KeyDer<'static>,
}

impl Creds {
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }

    /// The station's Basic-auth password (profile 2): 32 hex characters taken
    /// from SHA-256 of its key, so the keys file needs no field of its own.
    pub fn password(&self) -> String {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, self.key.secret_pkcs8_der());
        d.as_ref()[..16].iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The fleet, and the roots the clients need.
pub struct Fleet {
    pub stations: Vec<Arc<Creds>>,
    /// The CSMS root (DER): what the server's certificate chains to.
    pub csms_root: Vec<u8>,
    /// The tenant's station root (DER): what station certificates chain to.
    pub station_root: Vec<u8>,
    /// Seconds spent provisioning in this run (0 when all was reused).
    pub provision_secs: f64,
    /// Stations added in this run.
    pub added: usize,
}

pub fn station_id(prefix: &str, i: usize) -> String {
    format!("{prefix}-{i:06}")
}

pub fn keys_path(data_dir: &Path, prefix: &str) -> PathBuf {
    data_dir.join(format!("loadgen-keys-{prefix}.bin"))
}

struct KeysFile {
    database: String,
    prefix: String,
    /// 3: certificate records in the store; 2: password verifiers.
    profile: u8,
    csms_root: Vec<u8>,
    station_root: Vec<u8>,
    stations: Vec<Creds>,
}

/// What a keys file says of its database: the URL, or SQLite in the data dir
/// (which travels with it: a copied data dir keeps its fleet).
fn database_label(database_url: Option<&str>) -> String {
    database_url.map(str::to_owned).unwrap_or_else(|| "sqlite in the data dir".to_owned())
}

impl KeysFile {
    /// The first `fleet` stations, as a run uses them.
    fn into_fleet(self, fleet: usize, provision_secs: f64, added: usize) -> Fleet {
        let KeysFile { csms_root, station_root, mut stations, .. } = self;
        stations.truncate(fleet);
        Fleet { stations: stations.into_iter().map(Arc::new).collect(), csms_root, station_root, provision_secs, added }
    }
}

fn put(w: &mut impl Write, b: &[u8]) -> std::io::Result<()> {
    w.write_all(&u32::try_from(b.len()).unwrap_or(u32::MAX).to_le_bytes())?;
    w.write_all(b)
}

fn get(r: &mut impl Read) -> anyhow::Result<Vec<u8>> {
    let mut n = [0u8; 4];
    r.read_exact(&mut n)?;
    let n = u32::from_le_bytes(n) as usize;
    ensure!(n <= 1 << 20, "record of {n} bytes");
    let mut b = vec![0u8; n];
    r.read_exact(&mut b)?;
    Ok(b)
}

fn write_keys(path: &Path, k: &KeysFile) -> anyhow::Result<()> {
    let tmp = path.with_extension("bin.tmp");
    let mut w = BufWriter::new(std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?);
    w.write_all(MAGIC)?;
    put(&mut w, k.database.as_bytes())?;
    put(&mut w, k.prefix.as_bytes())?;
    w.write_all(&[k.profile])?;
    put(&mut w, &k.csms_root)?;
    put(&mut w, &k.station_root)?;
    w.write_all(&(k.stations.len() as u64).to_le_bytes())?;
    for s in &k.stations {
        put(&mut w, s.id.as_bytes())?;
        put(&mut w, s.key.secret_pkcs8_der())?;
        w.write_all(&(s.chain.len() as u32).to_le_bytes())?;
        for c in &s.chain {
            put(&mut w, c)?;
        }
    }
    w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn read_keys(path: &Path) -> anyhow::Result<Option<KeysFile>> {
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    };
    let mut r = BufReader::new(f);
    let mut magic = [0u8; 12];
    r.read_exact(&mut magic)?;
    ensure!(&magic == MAGIC, "{} is not a loadgen keys file", path.display());
    let text = |b: Vec<u8>| String::from_utf8(b).context("keys file: text field");
    let database = text(get(&mut r)?)?;
    let prefix = text(get(&mut r)?)?;
    let mut profile = [0u8; 1];
    r.read_exact(&mut profile)?;
    let profile = profile[0];
    let csms_root = get(&mut r)?;
    let station_root = get(&mut r)?;
    let mut n = [0u8; 8];
    r.read_exact(&mut n)?;
    let n = u64::from_le_bytes(n) as usize;
    let mut stations = Vec::with_capacity(n);
    for _ in 0..n {
        let id = text(get(&mut r)?)?;
        let key = PrivatePkcs8KeyDer::from(get(&mut r)?);
        let mut c = [0u8; 4];
        r.read_exact(&mut c)?;
        let mut chain = Vec::new();
        for _ in 0..u32::from_le_bytes(c) {
            chain.push(CertificateDer::from(get(&mut r)?));
        }
        stations.push(Creds { id, chain, key });
    }
    Ok(Some(KeysFile { database, prefix, profile, csms_root, station_root, stations }))
}

/// The first `fleet` stations of `prefix`, provisioned where missing.
pub async fn fleet(
    data_dir: &Path,
    database_url: Option<&str>,
    prefix: &str,
    fleet: usize,
    profile: u8,
) -> anyhow::Result<Fleet> {
    ensure!(matches!(profile, 2 | 3), "--profile must be 2 or 3");
    let database = database_label(database_url);
    let url = database_url.map(str::to_owned).unwrap_or_else(|| Store::sqlite_url(data_dir));
    let path = keys_path(data_dir, prefix);
    let existing = read_keys(&path)?.filter(|k| k.database == database && k.prefix == prefix && k.profile == profile);
    if let Some(k) = &existing
        && k.stations.len() >= fleet
        && still_registered(&url, prefix, fleet, profile).await?
    {
        return Ok(existing.context("keys file vanished")?.into_fleet(fleet, 0.0, 0));
    }
    let started = Instant::now();
    let mut cfg = csms::config::Config { data_dir: data_dir.to_owned(), ..Default::default() };
    cfg.database_url = database_url.map(str::to_owned);
    let opened = csms::serve::open(cfg, &csms::clock::SystemClock).await?;
    let store = &opened.store;
    let credential = |name: &'static str| async move {
        let rec = store.credential(TENANT, name).await?.with_context(|| format!("no {name} for tenant {TENANT}"))?;
        anyhow::Ok(rec)
    };
    let station_root = pki::pem_to_der_chain(&credential(STATION_ROOT).await?.cert_pem)?
        .into_iter()
        .next()
        .context("station root PEM holds no certificate")?;
    // The CSMS root, made here as the server makes it at its first start.
    let identity =
        authority::server_identity(store, &opened.keys, &csms::clock::SystemClock, &opened.config.server_names).await?;
    let csms_root =
        pki::pem_to_der_chain(&identity.root_pem)?.into_iter().next().context("the CSMS root PEM is empty")?;
    let ca_rec = credential(STATION_CA).await?;
    let tenant = store.tenant(TENANT).await?.context("tenant default")?;
    let public_url = opened.config.public_url();
    let verifier_key = csms::password::VerifierKey::from_master(opened.keys.master());

    // What the file holds is kept when it still matches the store.
    let mut have: Vec<Creds> = match existing {
        Some(k) if k.csms_root == csms_root && k.station_root == station_root => k.stations,
        _ => Vec::new(),
    };
    if !have.is_empty() && !still_registered(&url, prefix, have.len(), profile).await? {
        have.clear();
    }
    let from = have.len();
    let now = time::OffsetDateTime::now_utc();
    let validity = authority::Validity {
        not_before: now - time::Duration::hours(1),
        // Outside the automatic-renewal window: the load is boots and reports only.
        not_after: now + time::Duration::days(365),
    };
    let mut next = from;
    while next < fleet {
        let end = (next + BATCH).min(fleet);
        let ids: Vec<String> = (next..end).map(|i| station_id(prefix, i)).collect();
        let issued = issue_batch(&opened.keys, &ca_rec, &tenant, &public_url, &ids, validity, now)?;
        let mut new = Vec::with_capacity(issued.len());
        for (creds, _) in &issued {
            let password_hash = match profile {
                2 => Some(csms::password::keyed(&creds.password(), &verifier_key)?),
                _ => None,
            };
            new.push(NewStation {
                id: creds.id.clone(),
                tenant_id: TENANT.into(),
                security_profile: profile,
                password_hash,
                registration: Registration::Accepted,
                description: None,
                tags: Vec::new(),
            });
        }
        let millis = csms::clock::unix_millis(now);
        if let Err(e) = store.create_stations(&new, millis).await {
            // Left by an interrupted run: insert only the ones missing.
            if !matches!(e, csms::store::StoreError::AlreadyExists { .. }) {
                return Err(e.into());
            }
            // A station already there gets this run's password verifier:
            // the key that seeds its password is new.
            let mut missing = Vec::new();
            for s in new {
                if store.station(TENANT, &s.id).await?.is_none() {
                    missing.push(s);
                } else if let Some(hash) = &s.password_hash {
                    store.update_station(TENANT, &s.id, Some(2), Some(hash), None, None).await?;
                }
            }
            store.create_stations(&missing, millis).await?;
        }
        let (creds, records): (Vec<Creds>, Vec<StationWrite>) =
            issued.into_iter().map(|(c, r)| (c, StationWrite::Certificate(Box::new(r)))).unzip();
        // A profile-2 station logs in with its password; its key only seeds it.
        if profile == 3 {
            store.apply_writes(&records).await?;
        }
        have.extend(creds);
        next = end;
        if fleet - from > BATCH {
            eprint!("\rprovisioned {next}/{fleet} stations ({:.0} s)", started.elapsed().as_secs_f64());
        }
    }
    if fleet - from > BATCH {
        eprintln!();
    }
    let added = fleet.saturating_sub(from);
    let keys = KeysFile { database, prefix: prefix.to_owned(), profile, csms_root, station_root, stations: have };
    if added > 0 {
        write_keys(&path, &keys)?;
    }
    store.close().await;
    Ok(keys.into_fleet(fleet, if added > 0 { started.elapsed().as_secs_f64() } else { 0.0 }, added))
}

/// The first `fleet` stations of `prefix` from the keys file alone, as a
/// shard of the tool reads them (its coordinator checked them against the
/// store, or provisioned them, before starting it).
pub fn from_keys(
    data_dir: &Path,
    database_url: Option<&str>,
    prefix: &str,
    fleet: usize,
    profile: u8,
) -> anyhow::Result<Fleet> {
    let database = database_label(database_url);
    let path = keys_path(data_dir, prefix);
    let k = read_keys(&path)?.with_context(|| format!("{} is missing", path.display()))?;
    ensure!(
        k.database == database && k.prefix == prefix && k.profile == profile && k.stations.len() >= fleet,
        "{} does not hold {fleet} profile-{profile} stations of {prefix} for {database}",
        path.display()
    );
    Ok(k.into_fleet(fleet, 0.0, 0))
}

/// Whether the first and the last of `n` stations are in the store, with
/// security profile `profile`.
async fn still_registered(database: &str, prefix: &str, n: usize, profile: u8) -> anyhow::Result<bool> {
    if n == 0 {
        return Ok(true);
    }
    let store = Store::open(database, 2).await?;
    let has = |s: Option<csms::store::Station>| s.is_some_and(|s| s.security_profile == profile);
    let ok = has(store.station(TENANT, &station_id(prefix, 0)).await?)
        && has(store.station(TENANT, &station_id(prefix, n - 1)).await?);
    store.close().await;
    Ok(ok)
}

/// Keys, CSRs and certificates for `ids`, on every core: each thread opens
/// the station CA once.
fn issue_batch(
    keys: &authority::KeyBackend,
    ca_rec: &csms::store::CredentialRecord,
    tenant: &csms::store::Tenant,
    public_url: &str,
    ids: &[String],
    validity: authority::Validity,
    now: time::OffsetDateTime,
) -> anyhow::Result<Vec<(Creds, CertificateRecord)>> {
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let chunk = ids.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = ids
            .chunks(chunk)
            .map(|ids| {
                scope.spawn(move || -> anyhow::Result<Vec<(Creds, CertificateRecord)>> {
                    let mut ca = keys.open(&tenant.id, STATION_CA, ca_rec.clone())?;
                    let ca_id = ca.id();
                    ca.set_revocation_endpoints(authority::revocation_endpoints(public_url, &tenant.id, &ca_id));
                    let issuer = CertificateDer::from(ca.cert_der().to_vec());
                    let mut out = Vec::with_capacity(ids.len());
                    for id in ids {
                        let key = rcgen::KeyPair::generate()?;
                        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
                        params.distinguished_name.push(rcgen::DnType::CommonName, id.clone());
                        let csr = pki::validate_csr(&params.serialize_request(&key)?.pem()?, id)?;
                        let cert = ca.issue_station_certificate(
                            &csr,
                            &tenant.organization,
                            validity.not_before,
                            validity.not_after,
                        )?;
                        let record = CertificateRecord {
                            tenant_id: tenant.id.clone(),
                            serial_hex: cert.serial_hex.clone(),
                            station_id: id.clone(),
                            fingerprint: cert.sha256_fingerprint_hex.clone(),
                            not_before: csms::clock::unix_millis(cert.not_before),
                            not_after: csms::clock::unix_millis(cert.not_after),
                            cert_pem: cert.pem.clone(),
                            issued_at: csms::clock::unix_millis(now),
                            revoked_at: None,
                            revocation_reason: None,
                            issuer_id: Some(ca_id.clone()),
                        };
                        let creds = Creds {
                            id: id.clone(),
                            chain: vec![CertificateDer::from(cert.der), issuer.clone()],
                            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
                        };
                        out.push((creds, record));
                    }
                    Ok(out)
                })
            })
            .collect();
        let mut all = Vec::with_capacity(ids.len());
        for h in handles {
            match h.join() {
                Ok(r) => all.extend(r?),
                Err(_) => bail!("a key-generation thread panicked"),
            }
        }
        Ok(all)
    })
}
