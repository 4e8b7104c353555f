//! The rendered VM bootstrap under a real POSIX shell: `dash` runs the rendered run script (and
//! the rendered runcmd) with stub `docker`, `shutdown`, `timeout` and `apt-get` commands on PATH
//! that record what they receive. dash is what `sh` is on Debian and Ubuntu, and the strictest
//! common one; `tests/run.sh` installs it, and these tests fail (never skip) without it.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use base64::Engine as _;

use super::tests::spec;
use super::*;

/// An argument no shell may reinterpret: quotes, expansions, a glob, a comment.
const HOSTILE_ARG: &str = "it's $(id) `id` \"$HOME\" * # ;";

fn dash() -> PathBuf {
    ["/usr/bin/dash", "/bin/dash"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect(
            "dash is not installed; the bootstrap tests run the rendered run script under it. \
             Run the tests with `bash tests/run.sh`, which installs it (apt-get install dash)",
        )
}

fn layout(root: &str) -> BootLayout {
    BootLayout {
        dask: vec!["dask".into()],
        files_root: root.into(),
        bind_host: "0.0.0.0".into(),
        scheduler_port: SCHEDULER_PORT,
        dashboard_port: DASHBOARD_PORT,
        nanny: true,
    }
}

fn write_exec(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A directory of stubs. Each appends `NAME [arg] [arg]...` to `$CALLS`; `docker` also saves
/// its environment (`export -p`) to `$CALLS.docker-env`, writes a line to stdout and one to
/// stderr, and exits with `$DOCKER_EXIT`; `apt-get install` puts `docker` into `$LATER`.
/// The stubs use shell builtins only (and /bin/cp, /bin/chmod for the install).
struct Stubs {
    dir: tempfile::TempDir,
}

impl Stubs {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sh = dash();
        let record = |name: &str| {
            format!(
                "#!{}\n{{ printf '%s' {name}; for a in \"$@\"; do printf ' [%s]' \"$a\"; done; \
                 printf '\\n'; }} >>\"$CALLS\"\n",
                sh.display()
            )
        };
        for name in ["shutdown", "timeout"] {
            write_exec(&dir.path().join(name), &record(name));
        }
        write_exec(
            &dir.path().join("docker-template"),
            &format!(
                "{}export -p >\"$CALLS.docker-env\"\necho 'dask: a line on stdout'\n\
                 echo 'dask: a line on stderr' >&2\nexit \"$DOCKER_EXIT\"\n",
                record("docker")
            ),
        );
        write_exec(
            &dir.path().join("apt-get"),
            &format!(
                "{}if [ \"$1\" = install ]; then /bin/cp \"$STUBS/docker-template\" \
                 \"$LATER/docker\" && /bin/chmod 755 \"$LATER/docker\"; fi\n",
                record("apt-get")
            ),
        );
        std::fs::create_dir(dir.path().join("later")).unwrap();
        Stubs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn install_docker_now(&self) {
        std::fs::copy(
            self.path().join("docker-template"),
            self.path().join("docker"),
        )
        .unwrap();
    }

    /// `dash ARGS` with only the stubs on PATH (plus `extra_path`) and nothing else inherited.
    fn run(&self, args: &[&str], extra_path: &str) -> std::process::Output {
        let p = self.path();
        Command::new(dash())
            .args(args)
            .env_clear()
            .env(
                "PATH",
                format!("{}:{}{extra_path}", p.display(), p.join("later").display()),
            )
            .env("CALLS", p.join("calls"))
            .env("STUBS", p)
            .env("LATER", p.join("later"))
            .env("DOCKER_EXIT", "3")
            .output()
            .unwrap()
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.path().join("calls"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn docker_env(&self) -> String {
        std::fs::read_to_string(self.path().join("calls.docker-env")).unwrap()
    }
}

fn recorded(name: &str, args: &[&str]) -> String {
    let mut s = name.to_string();
    for a in args {
        s.push_str(&format!(" [{a}]"));
    }
    s
}

/// The rendered user-data's files, decoded, written under their absolute paths (which are
/// inside a temp dir: the layout's files root is one) with their modes.
fn write_files(user_data: &str) -> Vec<Vec<String>> {
    #[derive(Deserialize)]
    struct Doc {
        write_files: Vec<File>,
        runcmd: Vec<Vec<String>>,
    }
    #[derive(Deserialize)]
    struct File {
        path: String,
        permissions: String,
        content: String,
    }
    let doc: Doc = serde_saphyr::from_str(user_data).unwrap();
    for f in doc.write_files {
        let data = base64::engine::general_purpose::STANDARD
            .decode(&f.content)
            .unwrap();
        std::fs::write(&f.path, data).unwrap();
        let mode = u32::from_str_radix(&f.permissions, 8).unwrap();
        std::fs::set_permissions(&f.path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    doc.runcmd
}

/// A scheduler intent with one extra, hostile argument, rendered with its files root in `root`.
fn render(root: &str, install_docker: bool) -> (BootIntent, String) {
    // Created now, so the TTL power-off is the whole TTL away (`shutdown -P +60`).
    let s = ClusterSpec {
        created_at: crate::model::now_epoch(),
        ..spec()
    };
    let l = layout(root);
    let mut intent = scheduler_intent(&s, &l, None);
    intent.argv.push(HOSTILE_ARG.into());
    let vm = VmOptions {
        image: s.image.clone(),
        install_docker,
        gpu: false,
        keys: KeyDelivery::InUserData,
    };
    let text = render_cloud_init(&s, &intent, &l, &vm).unwrap();
    (intent, text)
}

fn expected_docker_call(intent: &BootIntent, root: &str) -> String {
    let mut args: Vec<String> = [
        "run",
        "--rm",
        "--name",
        "dask-scheduler",
        "--network",
        "host",
        "--env-file",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(format!("{root}/dask.env"));
    args.push("--volume".into());
    args.push(format!("{root}:{root}:ro"));
    args.push(spec().image);
    args.extend(intent.argv.iter().cloned());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    recorded("docker", &refs)
}

#[test]
fn run_script_arms_the_ttl_runs_docker_verbatim_and_powers_off_after_it() {
    let files = tempfile::tempdir().unwrap();
    let root = files.path().to_str().unwrap().to_string();
    let (intent, text) = render(&root, false);
    write_files(&text);
    let stubs = Stubs::new();
    stubs.install_docker_now();
    let out = stubs.run(&[&format!("{root}/run.sh")], "");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "run.sh failed: {stdout}\n{stderr}");
    assert_eq!(
        stubs.calls(),
        vec![
            recorded(
                "shutdown",
                &["-P", "+60", "clusterctl: cluster TTL reached"]
            ),
            expected_docker_call(&intent, &root),
            recorded(
                "shutdown",
                &["-P", "now", "clusterctl: dask scheduler exited"]
            ),
        ],
        "the TTL power-off is armed before docker starts, docker gets the intent's argv \
         verbatim, and the machine powers off after docker exits; no `timeout`, no install"
    );
    assert_eq!(
        stdout,
        "dask: a line on stdout\nclusterctl: dask scheduler exited with status 3; powering off\n"
    );
    assert_eq!(stderr, "dask: a line on stderr\n");
    // The intent's environment reaches the container through --env-file only: docker itself
    // runs in the machine's environment, untouched by the script.
    let env = stubs.docker_env();
    for key in intent.env.keys() {
        assert!(
            !env.contains(&format!("export {key}=")),
            "{key} leaked: {env}"
        );
    }
    assert!(env.contains("export DOCKER_EXIT="), "{env}");
}

#[test]
fn run_script_installs_docker_with_apt_get_only_when_missing() {
    let files = tempfile::tempdir().unwrap();
    let root = files.path().to_str().unwrap().to_string();
    let (intent, text) = render(&root, true);
    write_files(&text);

    let stubs = Stubs::new();
    let out = stubs.run(&[&format!("{root}/run.sh")], "");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        stubs.calls(),
        vec![
            recorded(
                "shutdown",
                &["-P", "+60", "clusterctl: cluster TTL reached"]
            ),
            recorded("apt-get", &["update", "-q"]),
            recorded("apt-get", &["install", "-yq", "docker.io"]),
            expected_docker_call(&intent, &root),
            recorded(
                "shutdown",
                &["-P", "now", "clusterctl: dask scheduler exited"]
            ),
        ]
    );

    let stubs = Stubs::new();
    stubs.install_docker_now();
    let out = stubs.run(&[&format!("{root}/run.sh")], "");
    assert!(out.status.success(), "{out:?}");
    assert!(
        !stubs.calls().iter().any(|c| c.starts_with("apt-get")),
        "docker is there: {:?}",
        stubs.calls()
    );
}

#[test]
fn runcmd_sends_the_output_to_the_log_file_and_the_console_in_the_background() {
    let files = tempfile::tempdir().unwrap();
    let root = files.path().to_str().unwrap().to_string();
    let (_, text) = render(&root, false);
    let runcmd = write_files(&text);
    assert_eq!(runcmd.len(), 1);
    assert_eq!(runcmd[0][..2], ["sh", "-c"]);
    // The two sinks, /var/log/clusterctl-dask.log and /dev/console, moved into the temp dir.
    let log = files.path().join("clusterctl-dask.log");
    let console = files.path().join("console");
    let command = runcmd[0][2]
        .replace("/var/log/clusterctl-dask.log", log.to_str().unwrap())
        .replace("/dev/console", console.to_str().unwrap());
    assert_ne!(command, runcmd[0][2]);
    let stubs = Stubs::new();
    stubs.install_docker_now();
    // nohup and tee are the machine's own (coreutils).
    let out = stubs.run(&["-c", &command], ":/usr/bin:/bin");
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stdout.is_empty() && out.stderr.is_empty(),
        "the runcmd itself prints nothing: {out:?}"
    );
    let last = "clusterctl: dask scheduler exited with status 3; powering off\n";
    let started = Instant::now();
    loop {
        let done = [&log, &console].iter().all(|p| {
            std::fs::read_to_string(p).is_ok_and(|t| t.ends_with(last)) && stubs.calls().len() == 3
        });
        if done {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the background run did not finish: calls {:?}",
            stubs.calls()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let log_text = std::fs::read_to_string(&log).unwrap();
    let console_text = std::fs::read_to_string(&console).unwrap();
    assert_eq!(log_text, console_text, "both sinks get the same output");
    for line in ["dask: a line on stdout\n", "dask: a line on stderr\n", last] {
        assert!(console_text.contains(line), "{line:?} in {console_text:?}");
    }
    assert!(stubs.calls()[2].starts_with("shutdown [-P] [now]"));
}
