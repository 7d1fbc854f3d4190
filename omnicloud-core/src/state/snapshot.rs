//! Snapshots: the whole resource state at one instant, in one file.
//!
//! A snapshot file is `OCSNAP\0\x01`, a little-endian `u32` header length, a JSON header (id,
//! time, lineage, serial, resource count, payload length and SHA-256), then the payload: the
//! resources as JSON, zstd-compressed (with zstd's own frame checksum). Files are written
//! atomically: a temporary file in the same directory, fsync, rename, fsync of the directory;
//! a crash leaves either the old set of snapshots or the new one, plus at most a temporary file
//! that the next [`SnapshotManager::open`] removes. Reading verifies length and checksum before
//! decoding anything, so a damaged snapshot is reported and never loaded half-way. This module
//! writes and reads files; what goes into a snapshot is the state store's export.

use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, Serializer};
use sha2::{Digest, Sha256};

use super::resource::Resource;
use super::store::StateExport;
use crate::error::SnapshotError;
use crate::ids::generate_id;

const MAGIC: &[u8; 8] = b"OCSNAP\x00\x01";
const EXTENSION: &str = "ocsnap";
const TEMP_PREFIX: &str = ".tmp-";
/// Headers are small; anything claiming more is corrupt.
const MAX_HEADER: u32 = 64 * 1024;
const ZSTD_LEVEL: i32 = 1;

/// What a snapshot holds, from its header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// The snapshot's id (`snap-` and a time-ordered UUID).
    pub id: String,
    /// When it was taken.
    pub created_at: DateTime<Utc>,
    /// The lineage of the state it was taken from.
    pub lineage: String,
    /// The state's serial at that instant.
    pub serial: u64,
    /// How many resources it holds.
    pub resource_count: u64,
    /// Length of the compressed payload, in bytes.
    pub payload_bytes: u64,
    /// SHA-256 of the compressed payload, hex.
    pub payload_sha256: String,
    /// Format version.
    pub format: u32,
}

/// Writes, lists, verifies, restores and prunes snapshots in one directory.
#[derive(Debug, Clone)]
pub struct SnapshotManager {
    directory: PathBuf,
}

struct ResourcesRef<'a>(&'a [Arc<Resource>]);

impl Serialize for ResourcesRef<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(AsRef::as_ref))
    }
}

impl SnapshotManager {
    /// Uses `directory` (created if missing) and removes temporary files left by a crash.
    pub fn open(directory: impl AsRef<Path>) -> Result<Self, SnapshotError> {
        let directory = directory.as_ref().to_path_buf();
        let refuse = |reason: String| SnapshotError::Directory {
            path: directory.clone(),
            reason,
        };
        if directory.exists() && !directory.is_dir() {
            return Err(refuse("exists and is not a directory".into()));
        }
        fs::create_dir_all(&directory).map_err(|e| refuse(e.to_string()))?;
        for entry in fs::read_dir(&directory).map_err(|e| refuse(e.to_string()))? {
            let entry = entry.map_err(|e| refuse(e.to_string()))?;
            if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                fs::remove_file(entry.path()).map_err(|e| refuse(e.to_string()))?;
            }
        }
        Ok(Self { directory })
    }

    /// The snapshot directory.
    pub fn directory(&self) -> &Path {
        &self.directory
    }

    fn io(path: &Path) -> impl Fn(std::io::Error) -> SnapshotError + '_ {
        move |source| SnapshotError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    fn path_of(&self, id: &str) -> Result<PathBuf, SnapshotError> {
        let valid = id.strip_prefix("snap-").is_some_and(|rest| {
            rest.len() == 36 && rest.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
        });
        if !valid {
            return Err(SnapshotError::InvalidId {
                snapshot_id: id.to_owned(),
            });
        }
        Ok(self.directory.join(format!("{id}.{EXTENSION}")))
    }

    /// Writes `export` as a new snapshot taken at `at`.
    pub fn create(
        &self,
        export: &StateExport,
        at: DateTime<Utc>,
    ) -> Result<SnapshotInfo, SnapshotError> {
        let id = format!("snap-{}", generate_id());
        let final_path = self.path_of(&id)?;
        let temp_path = self.directory.join(format!("{TEMP_PREFIX}{id}"));

        let mut payload = Vec::new();
        {
            let encoder_err = Self::io(&temp_path);
            let mut encoder = zstd::Encoder::new(&mut payload, ZSTD_LEVEL).map_err(&encoder_err)?;
            encoder.include_checksum(true).map_err(&encoder_err)?;
            serde_json::to_writer(&mut encoder, &ResourcesRef(&export.resources)).map_err(|e| {
                SnapshotError::Io {
                    path: temp_path.clone(),
                    source: std::io::Error::other(e),
                }
            })?;
            encoder.finish().map_err(&encoder_err)?;
        }
        let info = SnapshotInfo {
            id,
            created_at: at,
            lineage: export.lineage.clone(),
            serial: export.serial,
            resource_count: export.resources.len() as u64,
            payload_bytes: payload.len() as u64,
            payload_sha256: hex::encode(Sha256::digest(&payload)),
            format: 1,
        };
        let header = serde_json::to_vec(&info).map_err(|e| SnapshotError::Io {
            path: temp_path.clone(),
            source: std::io::Error::other(e),
        })?;

        let io = Self::io(&temp_path);
        let write = || -> std::io::Result<()> {
            let file = File::create(&temp_path)?;
            let mut out = BufWriter::new(file);
            out.write_all(MAGIC)?;
            out.write_all(&(header.len() as u32).to_le_bytes())?;
            out.write_all(&header)?;
            out.write_all(&payload)?;
            let file = out
                .into_inner()
                .map_err(std::io::IntoInnerError::into_error)?;
            file.sync_all()?;
            fs::rename(&temp_path, &final_path)?;
            File::open(&self.directory)?.sync_all()
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&temp_path);
            return Err(io(e));
        }
        Ok(info)
    }

    /// Reads a snapshot's header and payload, checking magic, lengths and checksum.
    fn read_verified(&self, id: &str) -> Result<(SnapshotInfo, Vec<u8>), SnapshotError> {
        let path = self.path_of(id)?;
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(SnapshotError::UnknownSnapshot {
                    snapshot_id: id.to_owned(),
                });
            }
            Err(e) => return Err(Self::io(&path)(e)),
        };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(Self::io(&path))?;
        let corrupt = |reason: String| SnapshotError::Corrupt {
            snapshot_id: id.to_owned(),
            reason,
        };
        let info = parse_header(&bytes).map_err(corrupt)?;
        if info.id != id {
            return Err(corrupt(format!("header names {:?}", info.id)));
        }
        let start = bytes.len() - info.payload_bytes as usize;
        let payload = bytes.split_off(start);
        if hex::encode(Sha256::digest(&payload)) != info.payload_sha256 {
            return Err(corrupt("payload checksum mismatch".into()));
        }
        Ok((info, payload))
    }

    /// Checks a snapshot completely (header, length, checksum, decodability) without
    /// returning its resources.
    pub fn verify(&self, id: &str) -> Result<SnapshotInfo, SnapshotError> {
        self.restore(id).map(|(info, _)| info)
    }

    /// Loads a snapshot: everything is verified before anything is returned.
    pub fn restore(&self, id: &str) -> Result<(SnapshotInfo, StateExport), SnapshotError> {
        let (info, payload) = self.read_verified(id)?;
        let corrupt = |reason: String| SnapshotError::Corrupt {
            snapshot_id: id.to_owned(),
            reason,
        };
        let json = zstd::decode_all(payload.as_slice())
            .map_err(|e| corrupt(format!("decompression failed: {e}")))?;
        let resources: Vec<Resource> = serde_json::from_slice(&json)
            .map_err(|e| corrupt(format!("payload does not decode: {e}")))?;
        if resources.len() as u64 != info.resource_count {
            return Err(corrupt(format!(
                "holds {} resources, header says {}",
                resources.len(),
                info.resource_count
            )));
        }
        let export = StateExport {
            lineage: info.lineage.clone(),
            serial: info.serial,
            resources: resources.into_iter().map(Arc::new).collect(),
        };
        Ok((info, export))
    }

    /// Every snapshot whose header is readable, oldest first. Damaged files still show up if
    /// their header survives; use [`SnapshotManager::verify`] to check the rest.
    pub fn list(&self) -> Result<Vec<SnapshotInfo>, SnapshotError> {
        let io = Self::io(&self.directory);
        let mut infos = Vec::new();
        for entry in fs::read_dir(&self.directory).map_err(&io)? {
            let path = entry.map_err(&io)?.path();
            if path.extension().and_then(|e| e.to_str()) != Some(EXTENSION) {
                continue;
            }
            let mut head = vec![0u8; 12 + MAX_HEADER as usize];
            let mut file = File::open(&path).map_err(Self::io(&path))?;
            let n = read_up_to(&mut file, &mut head).map_err(Self::io(&path))?;
            head.truncate(n);
            if let Ok(info) = parse_header_only(&head) {
                infos.push(info);
            }
        }
        infos.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(infos)
    }

    /// The newest snapshot that verifies completely, if any.
    pub fn latest_good(&self) -> Result<Option<SnapshotInfo>, SnapshotError> {
        for info in self.list()?.into_iter().rev() {
            if self.verify(&info.id).is_ok() {
                return Ok(Some(info));
            }
        }
        Ok(None)
    }

    /// Deletes one snapshot.
    pub fn delete(&self, id: &str) -> Result<(), SnapshotError> {
        let path = self.path_of(id)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(SnapshotError::UnknownSnapshot {
                    snapshot_id: id.to_owned(),
                })
            }
            Err(e) => Err(Self::io(&path)(e)),
        }
    }

    /// Keeps the newest `keep` snapshots and deletes the rest; returns the deleted ids.
    pub fn retain(&self, keep: usize) -> Result<Vec<String>, SnapshotError> {
        let all = self.list()?;
        let excess = all.len().saturating_sub(keep);
        let mut removed = Vec::with_capacity(excess);
        for info in all.into_iter().take(excess) {
            self.delete(&info.id)?;
            removed.push(info.id);
        }
        Ok(removed)
    }
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Parses magic and header from the start of a file.
fn parse_header_only(bytes: &[u8]) -> Result<SnapshotInfo, String> {
    if bytes.len() < 12 || &bytes[..8] != MAGIC {
        return Err("not a snapshot file (bad magic)".into());
    }
    let len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if len > MAX_HEADER {
        return Err(format!("header length {len} is implausible"));
    }
    let end = 12 + len as usize;
    let header = bytes.get(12..end).ok_or("truncated inside the header")?;
    serde_json::from_slice(header).map_err(|e| format!("header does not decode: {e}"))
}

/// Parses the header of a whole file and checks the file's length against it.
fn parse_header(bytes: &[u8]) -> Result<SnapshotInfo, String> {
    let info = parse_header_only(bytes)?;
    let header_len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as u64;
    let expected = 12 + header_len + info.payload_bytes;
    match (bytes.len() as u64).cmp(&expected) {
        std::cmp::Ordering::Less => Err(format!("truncated: {} of {expected} bytes", bytes.len())),
        std::cmp::Ordering::Greater => Err(format!(
            "{} bytes where {expected} were written",
            bytes.len()
        )),
        std::cmp::Ordering::Equal => Ok(info),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::TenantId;
    use proptest::prelude::*;
    use serde_json::json;

    fn export(n: usize) -> StateExport {
        let tenant = TenantId::new("acme").expect("tenant");
        StateExport {
            lineage: "lineage-1".into(),
            serial: 7,
            resources: (0..n)
                .map(|i| {
                    Arc::new(
                        Resource::new(
                            format!("r{i}"),
                            tenant.clone(),
                            "database",
                            "eu-west-1",
                            json!({"i": i, "tags": ["a"]}),
                        )
                        .expect("resource"),
                    )
                })
                .collect(),
        }
    }

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_770_000_000 + s, 0).expect("time")
    }

    #[test]
    fn create_list_verify_restore() {
        let dir = tempfile::tempdir().expect("tempdir");
        let m = SnapshotManager::open(dir.path()).expect("open");
        let info = m.create(&export(100), at(0)).expect("create");
        assert_eq!(
            (info.resource_count, info.serial, info.lineage.as_str()),
            (100, 7, "lineage-1")
        );
        assert_eq!(m.list().expect("list"), vec![info.clone()]);
        assert_eq!(m.verify(&info.id).expect("verify"), info);
        let (_, restored) = m.restore(&info.id).expect("restore");
        assert_eq!(restored, export(100));
        assert_eq!(m.latest_good().expect("latest"), Some(info));
    }

    #[test]
    fn corruption_and_truncation_are_detected_before_loading() {
        let dir = tempfile::tempdir().expect("tempdir");
        let m = SnapshotManager::open(dir.path()).expect("open");
        let info = m.create(&export(50), at(0)).expect("create");
        let path = m.path_of(&info.id).expect("path");
        let good = fs::read(&path).expect("read");

        let mut flipped = good.clone();
        let last = flipped.len() - 5;
        flipped[last] ^= 0xff;
        fs::write(&path, &flipped).expect("write");
        assert!(
            matches!(m.restore(&info.id), Err(SnapshotError::Corrupt { ref reason, .. }) if reason.contains("checksum"))
        );

        fs::write(&path, &good[..good.len() / 2]).expect("write");
        assert!(
            matches!(m.verify(&info.id), Err(SnapshotError::Corrupt { ref reason, .. }) if reason.contains("truncated"))
        );

        fs::write(&path, &good[..10]).expect("write");
        assert!(m.verify(&info.id).is_err());
        assert!(
            m.list().expect("list").is_empty(),
            "an unreadable header is not listed"
        );

        let mut extended = good.clone();
        extended.extend_from_slice(b"junk");
        fs::write(&path, &extended).expect("write");
        assert!(m.verify(&info.id).is_err());
        assert_eq!(m.latest_good().expect("latest"), None);

        fs::write(&path, &good).expect("write");
        assert!(m.verify(&info.id).is_ok());
    }

    #[test]
    fn bad_ids_unknown_ids_and_bad_directories() {
        let dir = tempfile::tempdir().expect("tempdir");
        let m = SnapshotManager::open(dir.path().join("nested/snaps")).expect("creates");
        for bad in ["../../etc/passwd", "snap-", "snap-zzzz", ""] {
            assert!(
                matches!(m.restore(bad), Err(SnapshotError::InvalidId { .. })),
                "{bad}"
            );
        }
        let unknown = format!("snap-{}", generate_id());
        assert!(matches!(
            m.restore(&unknown),
            Err(SnapshotError::UnknownSnapshot { .. })
        ));
        assert!(matches!(
            m.delete(&unknown),
            Err(SnapshotError::UnknownSnapshot { .. })
        ));
        let file = dir.path().join("file");
        fs::write(&file, b"x").expect("write");
        assert!(matches!(
            SnapshotManager::open(&file),
            Err(SnapshotError::Directory { .. })
        ));
    }

    #[test]
    fn retention_keeps_the_newest_and_open_removes_temporaries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let m = SnapshotManager::open(dir.path()).expect("open");
        let ids: Vec<String> = (0..5)
            .map(|i| m.create(&export(3), at(i)).expect("create").id)
            .collect();
        let removed = m.retain(2).expect("retain");
        assert_eq!(removed, ids[..3]);
        assert_eq!(
            m.list()
                .expect("list")
                .iter()
                .map(|i| i.id.clone())
                .collect::<Vec<_>>(),
            ids[3..]
        );
        fs::write(dir.path().join(".tmp-snap-crashed"), b"partial").expect("write");
        SnapshotManager::open(dir.path()).expect("reopen");
        assert!(!dir.path().join(".tmp-snap-crashed").exists());
    }

    /// Writes a snapshot file by hand: a valid header (checksum matching `payload`) around any
    /// payload, to reach the checks behind the checksum.
    fn forge(m: &SnapshotManager, id: &str, payload: &[u8], count: u64) {
        let info = SnapshotInfo {
            id: id.to_owned(),
            created_at: at(0),
            lineage: "l".into(),
            serial: 0,
            resource_count: count,
            payload_bytes: payload.len() as u64,
            payload_sha256: hex::encode(Sha256::digest(payload)),
            format: 1,
        };
        let header = serde_json::to_vec(&info).expect("header");
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&(header.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&header);
        bytes.extend_from_slice(payload);
        fs::write(m.path_of(id).expect("path"), bytes).expect("write");
    }

    #[test]
    fn checks_behind_the_checksum() {
        let dir = tempfile::tempdir().expect("tempdir");
        let m = SnapshotManager::open(dir.path()).expect("open");
        assert_eq!(m.directory(), dir.path());
        let id = format!("snap-{}", generate_id());
        forge(&m, &id, b"not zstd at all", 0);
        assert!(
            matches!(m.restore(&id), Err(SnapshotError::Corrupt { ref reason, .. }) if reason.contains("decompression"))
        );
        let not_json = zstd::encode_all(&b"{oops"[..], 1).expect("zstd");
        forge(&m, &id, &not_json, 0);
        assert!(
            matches!(m.restore(&id), Err(SnapshotError::Corrupt { ref reason, .. }) if reason.contains("decode"))
        );
        let empty = zstd::encode_all(&b"[]"[..], 1).expect("zstd");
        forge(&m, &id, &empty, 3);
        assert!(
            matches!(m.restore(&id), Err(SnapshotError::Corrupt { ref reason, .. }) if reason.contains("header says 3"))
        );
        // A file renamed to another id does not pass as that snapshot.
        let other = format!("snap-{}", generate_id());
        fs::copy(m.path_of(&id).expect("p"), m.path_of(&other).expect("p")).expect("copy");
        assert!(
            matches!(m.verify(&other), Err(SnapshotError::Corrupt { ref reason, .. }) if reason.contains("header names"))
        );
        // An implausible header length and a bad magic.
        let mut bad = MAGIC.to_vec();
        bad.extend_from_slice(&u32::MAX.to_le_bytes());
        fs::write(m.path_of(&other).expect("p"), &bad).expect("write");
        assert!(m.verify(&other).is_err());
        fs::write(m.path_of(&other).expect("p"), b"NOTSNAP!xxxx").expect("write");
        assert!(m.verify(&other).is_err());
        // Foreign files in the directory are not listed.
        fs::write(dir.path().join("notes.txt"), b"hello").expect("write");
        let listed: Vec<String> = m.list().expect("list").into_iter().map(|i| i.id).collect();
        assert_eq!(listed, vec![id]);
    }

    #[test]
    fn latest_good_skips_a_damaged_newest_snapshot() {
        let dir = tempfile::tempdir().expect("tempdir");
        let m = SnapshotManager::open(dir.path()).expect("open");
        let older = m.create(&export(5), at(0)).expect("older");
        let newer = m.create(&export(5), at(10)).expect("newer");
        let path = m.path_of(&newer.id).expect("path");
        let mut bytes = fs::read(&path).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&path, bytes).expect("write");
        assert_eq!(m.latest_good().expect("latest"), Some(older.clone()));
        m.delete(&newer.id).expect("delete");
        assert_eq!(m.list().expect("list"), vec![older]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn round_trips_random_state(specs in proptest::collection::vec((0u64..1000, "[a-z]{0,8}", proptest::option::of(-1e6f64..1e6)), 0..40)) {
            let tenant = TenantId::new("t").expect("tenant");
            let resources: Vec<Arc<Resource>> = specs
                .iter()
                .enumerate()
                .map(|(i, (n, s, f))| {
                    Arc::new(Resource::new(format!("r{i}"), tenant.clone(), "k", "r", json!({"n": n, "s": s, "f": f})).expect("resource"))
                })
                .collect();
            let state = StateExport { lineage: "l".into(), serial: specs.len() as u64, resources };
            let dir = tempfile::tempdir().expect("tempdir");
            let m = SnapshotManager::open(dir.path()).expect("open");
            let info = m.create(&state, at(0)).expect("create");
            let (_, back) = m.restore(&info.id).expect("restore");
            prop_assert_eq!(back, state);
        }
    }
}
