//! The off-site copy end to end (issue 17): the real `runbook` binary backs
//! up the sandbox (stand-in `nodetool`/`cqlsh`, the Elasticsearch stand-in)
//! to its S3 stand-in (moto, tests/sandbox/README.md), encrypted with age or
//! not; `restore-prep` decrypts what came back from off-site; `verify --set
//! STAMP --offsite` re-checks the copy; `offsite_keep` prunes only verified
//! sets this workflow made.

use std::path::{Path, PathBuf};

use age::secrecy::ExposeSecret;
use runbook_test_support::{Test, cluster, support};

use cluster::*;
use support::assert_contains;

/// The keys under `sets/` in the bucket `offsite`, sorted.
fn offsite_keys(cluster: &Cluster) -> Vec<String> {
    let listing = cluster.boto3(
        "for o in s3.list_objects_v2(Bucket='offsite',Prefix='sets/').get('Contents',[]): print(o['Key'])",
    );
    let mut keys: Vec<String> = listing.lines().map(str::to_string).collect();
    keys.sort();
    keys
}

/// An age key pair as `age-keygen` writes it: (recipients file, identity file).
#[allow(deprecated)] // X25519: what age-keygen makes today
fn age_keys(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let identity = age::x25519::Identity::generate();
    let recipients = dir.join(format!("{name}.recipients"));
    std::fs::write(
        &recipients,
        format!("# off-site backups\n{}\n", identity.to_public()),
    )
    .unwrap();
    let key = dir.join(format!("{name}.key"));
    std::fs::write(
        &key,
        format!(
            "# created by the test\n# public key: {}\n{}\n",
            identity.to_public(),
            identity.to_string().expose_secret()
        ),
    )
    .unwrap();
    (recipients, key)
}

/// The stock backup of `cluster` with its off-site copy to
/// `th_minio/offsite/sets` and the config `settings` (`KEY=VALUE`).
fn backup(cluster: &Cluster, settings: &[String]) -> Test {
    let mut test = cluster.runbook(&[
        "run",
        "cluster-hot-backup",
        "--set",
        "offsite=th_minio/offsite/sets",
    ]);
    for setting in settings {
        test = test.arg("--set").arg(setting);
    }
    test
}

/// `runbook run restore-prep` in the cluster's folder with `settings` only
/// (no sandbox vars).
fn restore_prep(cluster: &Cluster, settings: &[(&str, String)]) -> Test {
    Test::at(cluster.dir.path())
        .args(["run", "restore-prep"])
        .settings(settings)
}

/// Every file below `root` whose name ends with `suffix`.
fn files_ending(root: &Path, suffix: &str) -> Vec<PathBuf> {
    walk(root)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect()
}

#[test]
fn an_encrypted_offsite_copy_is_not_plaintext_decrypts_back_and_verify_catches_tampering() {
    let cluster = Cluster::start(&["--storage", "s3", "--objects", "40"]);
    cluster.make_bucket("offsite");
    let keys = cluster.dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    let (recipients, identity) = age_keys(&keys, "offsite");
    let (_, wrong_identity) = age_keys(&keys, "other");

    backup(
        &cluster,
        &[
            "offsite_encrypt=age".to_string(),
            format!("offsite_recipients={}", recipients.display()),
        ],
    )
    .run()
    .success();
    let backup_dir = cluster.path("backup");
    let minio_dir = cluster.path("s3_archive");
    let stamp = only_stamp(&backup_dir, "backup_", ".json");

    // The local archives stay plain; the temporary .age files are gone.
    for root in [&backup_dir, &minio_dir] {
        assert!(files_ending(root, ".age").is_empty(), "{:?}", walk(root));
        assert!(
            files_ending(root, ".partial").is_empty(),
            "{:?}",
            walk(root)
        );
    }
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(backup_dir.join(format!("offsite_{stamp}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(record["encryption"], "age");
    assert_eq!(record["verified"]["result"], "ok", "{record}");

    // Off-site: the archives only as NAME.age, the manifest readable.
    let expected: Vec<String> = [
        format!("backup_{stamp}.json"),
        format!("cassandra_{stamp}.tar.age"),
        format!("cassandra_{stamp}.tar.sha256"),
        format!("elasticsearch_{stamp}.info"),
        format!("minio_{stamp}.tar.age"),
        format!("minio_{stamp}.tar.sha256"),
        format!("offsite_{stamp}.json"),
    ]
    .iter()
    .map(|n| format!("sets/{n}"))
    .collect();
    assert_eq!(offsite_keys(&cluster), expected);

    // The machine is lost: the off-site objects are brought back into a
    // fresh folder laid out like the backup, the local archives set aside.
    let recovered = cluster.dir.path().join("recovered");
    for (folder, names) in [
        ("", vec![format!("backup_{stamp}.json")]),
        (
            "cassandra",
            vec![
                format!("cassandra_{stamp}.tar.age"),
                format!("cassandra_{stamp}.tar.sha256"),
            ],
        ),
        ("elasticsearch", vec![format!("elasticsearch_{stamp}.info")]),
        (
            "minio",
            vec![
                format!("minio_{stamp}.tar.age"),
                format!("minio_{stamp}.tar.sha256"),
            ],
        ),
    ] {
        let into = recovered.join(folder);
        std::fs::create_dir_all(&into).unwrap();
        for name in names {
            cluster.boto3(&format!(
                "s3.download_file('offsite','sets/{name}','{}')",
                into.join(&name).display()
            ));
        }
    }
    for encrypted in files_ending(&recovered, ".age") {
        let bytes = std::fs::read(&encrypted).unwrap();
        assert!(
            bytes.starts_with(b"age-encryption.org/v1\n"),
            "{}",
            encrypted.display()
        );
        assert!(
            !bytes.windows(5).any(|w| w == b"ustar"),
            "{} holds tar headers in the clear",
            encrypted.display()
        );
    }
    let originals = cluster.dir.path().join("originals");
    std::fs::create_dir(&originals).unwrap();
    let cassandra_plain = originals.join(format!("cassandra_{stamp}.tar"));
    let minio_plain = originals.join(format!("minio_{stamp}.tar"));
    std::fs::rename(
        backup_dir.join(format!("cassandra/cassandra_{stamp}.tar")),
        &cassandra_plain,
    )
    .unwrap();
    std::fs::rename(minio_dir.join(format!("minio_{stamp}.tar")), &minio_plain).unwrap();

    let staging = cluster.dir.path().join("staging");
    let settings = |identity: Option<&Path>| {
        let mut settings = vec![
            ("manifest_path", recovered.display().to_string()),
            ("staging", staging.display().to_string()),
            ("elasticsearch_url", cluster.es_url()),
            (
                "cassandra_archive_path",
                recovered.join("cassandra").display().to_string(),
            ),
            (
                "s3_archive_path",
                recovered.join("minio").display().to_string(),
            ),
        ];
        if let Some(identity) = identity {
            settings.push(("offsite_identity", identity.display().to_string()));
        }
        settings
    };
    let plain_in_recovered = || {
        let mut found = files_ending(&recovered, ".tar");
        found.extend(files_ending(&recovered, ".partial"));
        found
    };

    // No identity: one line naming the config key, nothing ran.
    restore_prep(&cluster, &settings(None))
        .run()
        .failure(2)
        .stderr_contains("set offsite_identity to the age identity file");
    assert!(!staging.exists(), "nothing ran: no staging folder");

    // The wrong identity: one clear line, exit 1, nothing half-written.
    restore_prep(&cluster, &settings(Some(&wrong_identity)))
        .run()
        .failure(1)
        .stderr_contains(&format!(
            "cassandra_{stamp}.tar.age was not encrypted to any key in identity file {}",
            wrong_identity.display()
        ));
    assert!(
        plain_in_recovered().is_empty(),
        "{:?}",
        plain_in_recovered()
    );

    // The right identity: the archives come back byte for byte, verified.
    restore_prep(&cluster, &settings(Some(&identity)))
        .run()
        .success();
    for (decrypted, original) in [
        (
            recovered.join(format!("cassandra/cassandra_{stamp}.tar")),
            &cassandra_plain,
        ),
        (
            recovered.join(format!("minio/minio_{stamp}.tar")),
            &minio_plain,
        ),
    ] {
        assert!(
            std::fs::read(&decrypted).unwrap() == std::fs::read(original).unwrap(),
            "{} differs from the archive",
            decrypted.display()
        );
    }
    assert!(staging.join(&stamp).join("restore-plan.sh").is_file());

    // verify --offsite: every object downloaded and hashed, no identity needed.
    let verify = |manifest_path: &Path, dest: Option<&str>| {
        cluster
            .runbook(&["verify", "--set", &stamp, "--manifest-path"])
            .arg(manifest_path)
            .arg("--offsite")
            .args(dest)
            .run()
    };
    verify(&backup_dir, None)
        .success()
        .stdout_contains(&format!(
            "set {stamp}: off-site copy at th_minio/offsite/sets verified ok"
        ));

    // One object overwritten off-site with as many other bytes: caught, named.
    let key = format!("sets/minio_{stamp}.tar.age");
    cluster.boto3(&format!(
        "b=bytearray(s3.get_object(Bucket='offsite',Key='{key}')['Body'].read())\n\
             b[len(b)//2]^=1\n\
             s3.put_object(Bucket='offsite',Key='{key}',Body=bytes(b))"
    ));
    verify(&backup_dir, None)
        .failure(1)
        .stdout_contains(&format!("BAD `{key}` in bucket `offsite`"))
        .stdout_contains("does not match the record")
        .stdout_contains(&format!("ok sets/cassandra_{stamp}.tar.age"));
    // Without the local record (the machine is lost): the off-site record.
    let empty = cluster.dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    verify(&empty, Some("th_minio/offsite/sets"))
        .failure(1)
        .stdout_contains(&format!("BAD `{key}` in bucket `offsite`"));
    verify(&empty, None)
        .failure(2)
        .stderr_contains("give the destination, `--offsite ALIAS/BUCKET/PREFIX`");
}

#[test]
fn a_bad_recipients_file_stops_the_backup_before_anything_is_made() {
    let cluster = Cluster::start(&["--storage", "s3", "--objects", "5"]);
    cluster.make_bucket("offsite");
    let recipients = cluster.dir.path().join("offsite.recipients");
    std::fs::write(&recipients, "# no key yet\nage1notakey\n").unwrap();
    backup(
        &cluster,
        &[
            "offsite_encrypt=age".to_string(),
            format!("offsite_recipients={}", recipients.display()),
        ],
    )
    .run()
    .failure(2)
    .stderr_contains(&format!(
        "recipients file {} line 2: not an age (age1...) or SSH public key: fix the file or the config key offsite_recipients",
        recipients.display()
    ));
    assert!(
        cluster.backup_files().is_empty(),
        "{:?}",
        cluster.backup_files()
    );
    assert!(offsite_keys(&cluster).is_empty());

    // With a good file, a plan shows the encrypted names and changes nothing.
    #[allow(deprecated)]
    let public = age::x25519::Identity::generate().to_public();
    std::fs::write(&recipients, format!("{public}\n")).unwrap();
    let err = cluster
        .runbook(&[
            "plan",
            "cluster-hot-backup",
            "--set",
            "offsite=th_minio/offsite/sets",
            "--set",
            "offsite_encrypt=age",
            "--set",
            &format!("offsite_recipients={}", recipients.display()),
        ])
        .run()
        .success()
        .stderr;
    let line = err
        .lines()
        .find(|l| {
            l.contains(
                "[dry-run] would copy to th_minio/offsite/sets (archives encrypted with age to",
            )
        })
        .unwrap_or_else(|| panic!("no off-site line in:\n{err}"));
    assert_contains(line, ".tar.age\"");
    assert_contains(line, ".tar.sha256\"");
    assert!(
        cluster.backup_files().is_empty(),
        "{:?}",
        cluster.backup_files()
    );
    assert!(offsite_keys(&cluster).is_empty());
}

#[test]
fn offsite_keep_removes_only_older_verified_sets_of_this_workflow() {
    let cluster = Cluster::start(&["--storage", "s3", "--objects", "5"]);
    cluster.make_bucket("offsite");
    let mut stamps = Vec::new();
    for _ in 0..2 {
        let before: Vec<String> = offsite_keys(&cluster);
        backup(&cluster, &[]).run().success();
        let after = offsite_keys(&cluster);
        let manifest = after
            .iter()
            .find(|k| !before.contains(k) && k.starts_with("sets/backup_"))
            .expect("a new manifest off-site");
        stamps.push(manifest["sets/backup_".len()..manifest.len() - ".json".len()].to_string());
        // Stamps have whole seconds: the next run gets another one.
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    let (unverified, older) = (&stamps[0], &stamps[1]);
    // The first copy's upload could only be checked by size (a server with
    // neither checksums nor MD5 ETags): its record says so.
    cluster.boto3(&format!(
        "k='sets/offsite_{unverified}.json'\n\
             r=json.loads(s3.get_object(Bucket='offsite',Key=k)['Body'].read())\n\
             r['verified']={{'result':'unverified','detail':'only the size could be checked'}}\n\
             s3.put_object(Bucket='offsite',Key=k,Body=json.dumps(r).encode())"
    ));
    // A set another tool put there, and one of another workflow.
    let foreign = "20200101_00h00m00s";
    cluster.boto3(&format!(
        "s3.put_object(Bucket='offsite',Key='sets/backup_{foreign}.json',Body=b'{{}}')\n\
             s3.put_object(Bucket='offsite',Key='sets/cassandra_{foreign}.tar',Body=b'x'*10)"
    ));

    backup(&cluster, &["offsite_keep=1".to_string()])
        .run()
        .success()
        .stderr_contains(&format!(
            "off-site set {unverified} is not verified (only the size could be checked): kept, not counted"
        ))
        .stderr_contains(&format!(
            "off-site set {foreign} has no readable runbook manifest: left alone"
        ))
        .stderr_contains(&format!("removed off-site set {older}"));
    let keys = offsite_keys(&cluster);
    let newest = only_new_stamp(&keys, &stamps, foreign);
    assert!(
        !keys.iter().any(|k| k.contains(older.as_str())),
        "{older} should be gone: {keys:?}"
    );
    for kept in [unverified.as_str(), newest.as_str()] {
        for name in [
            format!("sets/backup_{kept}.json"),
            format!("sets/offsite_{kept}.json"),
            format!("sets/cassandra_{kept}.tar"),
            format!("sets/minio_{kept}.tar"),
        ] {
            assert!(keys.contains(&name), "{name} missing: {keys:?}");
        }
    }
    for name in [
        format!("sets/backup_{foreign}.json"),
        format!("sets/cassandra_{foreign}.tar"),
    ] {
        assert!(keys.contains(&name), "{name} missing: {keys:?}");
    }
    // Local sets are the local retention's (keep = 0): all three still there.
    for stamp in stamps.iter().chain([&newest]) {
        assert!(
            cluster
                .path("backup")
                .join(format!("backup_{stamp}.json"))
                .is_file()
        );
    }
}

/// The stamp of the one manifest in `keys` that is none of `known` nor `foreign`.
fn only_new_stamp(keys: &[String], known: &[String], foreign: &str) -> String {
    let new: Vec<&str> = keys
        .iter()
        .filter_map(|k| k.strip_prefix("sets/backup_")?.strip_suffix(".json"))
        .filter(|s| *s != foreign && !known.iter().any(|k| k == s))
        .collect();
    assert_eq!(new.len(), 1, "{keys:?}");
    new[0].to_string()
}
