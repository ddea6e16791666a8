//! Command-line entry point: parses arguments and dispatches; the work is in the library.

use anyhow::{Context, Result};
use argh::FromArgs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ovirt_node_reg::config::Loaded;
use ovirt_node_reg::paths::{self, Root};
use ovirt_node_reg::secret::Secret;
use ovirt_node_reg::status::{self, Outcome, Status};
use ovirt_node_reg::store::{Persisted, Store};
use ovirt_node_reg::{console, escape, explain, flow, logging, slots, sources};

#[derive(FromArgs)]
/// Register this oVirt Node with the oVirt Engine early in boot.
struct Cli {
    /// directory to treat as the root of the system (default: /)
    #[argh(option, default = "PathBuf::from(\"/\")")]
    root: PathBuf,
    /// file holding the kernel command line (default: ROOT/proc/cmdline)
    #[argh(option)]
    cmdline: Option<PathBuf>,
    /// log debug messages
    #[argh(switch)]
    debug: bool,
    /// also log to /dev/kmsg (the default when running as PID 1)
    #[argh(switch)]
    kmsg: bool,
    #[argh(subcommand)]
    command: Command,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Command {
    Boot(BootCmd),
    Config(ConfigCmd),
    Persist(PersistCmd),
    Unpersist(UnpersistCmd),
    Restore(RestoreCmd),
    Status(StatusCmd),
    Version(VersionCmd),
    Register(RegisterCmd),
    Reenroll(ReenrollCmd),
    Setup(SetupCmd),
    Bootstrap(BootstrapCmd),
    Worker(WorkerCmd),
    Init(InitCmd),
    Install(InstallCmd),
    Upgrade(UpgradeCmd),
}

#[derive(FromArgs)]
#[argh(subcommand, name = "boot")]
/// run the registration flow from the first step not done yet
struct BootCmd {
    /// initramfs (stop after submitting the certificate requests, so the boot goes on) or
    /// system (every step, waiting for approval within ovirt.reg.approval_timeout); default system
    #[argh(option, default = "flow::Stage::System")]
    stage: flow::Stage,
}

#[derive(FromArgs)]
#[argh(subcommand, name = "config")]
/// inspect the configuration
struct ConfigCmd {
    #[argh(subcommand)]
    command: ConfigSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum ConfigSub {
    Show(ConfigShowCmd),
    Check(ConfigCheckCmd),
}

#[derive(FromArgs)]
#[argh(subcommand, name = "show")]
/// print the effective configuration, where each value came from and what it means
struct ConfigShowCmd {
    /// print JSON instead of text
    #[argh(switch)]
    json: bool,
    /// one line per setting: value, source, what it is for and what the value means
    #[argh(switch)]
    explain: bool,
}

#[derive(FromArgs)]
#[argh(subcommand, name = "check")]
/// check a kernel command line before it is used (no root, nothing is touched): exit 0 if
/// it is valid, 2 if not, each bad argument and its expected form on stderr
struct ConfigCheckCmd {
    /// the command line to check, as one argument
    #[argh(option)]
    cmdline: Option<String>,
    /// a file holding the command line, or - for stdin
    #[argh(option)]
    cmdline_file: Option<PathBuf>,
}

#[derive(FromArgs)]
#[argh(subcommand, name = "persist")]
/// keep files or directories across reboots in the config store
struct PersistCmd {
    /// absolute paths to persist
    #[argh(positional)]
    paths: Vec<PathBuf>,
}

#[derive(FromArgs)]
#[argh(subcommand, name = "unpersist")]
/// stop keeping files in the config store (the live copy stays)
struct UnpersistCmd {
    /// absolute paths to unpersist
    #[argh(positional)]
    paths: Vec<PathBuf>,
}

#[derive(FromArgs)]
#[argh(subcommand, name = "restore")]
/// bind-mount every persisted file over its live path (done at boot)
struct RestoreCmd {}

#[derive(FromArgs)]
#[argh(subcommand, name = "status")]
/// print the state of the last run
struct StatusCmd {
    /// print JSON instead of text
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs)]
#[argh(subcommand, name = "register")]
/// trust the engine and register this host with it again (on an installed host)
struct RegisterCmd {
    /// the engine, HOST[:PORT] (default: management_server from the configuration)
    #[argh(option)]
    engine: Option<String>,
    /// the config store, as ovirt.reg.store=: a directory or block device, or `none` on a
    /// host whose root file system is persistent (files written in place)
    #[argh(option)]
    store: Option<String>,
}

#[derive(FromArgs)]
#[argh(subcommand, name = "setup")]
/// configure this node by hand: interactive on a terminal, or every answer as a flag
/// (--engine and --ca-pin at least); nothing is written before the final confirmation
struct SetupCmd {
    /// the engine, HOST[:PORT]: answer every question with the flags instead of asking
    #[argh(option)]
    engine: Option<String>,
    /// the engine CA's SHA-256 (sha256:<hex>), compared on the engine; must match what the
    /// engine presents
    #[argh(option)]
    ca_pin: Option<String>,
    /// root's password as a crypt(3) hash ($6$…, $5$… or $y$…), written to /etc/shadow;
    /// `-` reads it from stdin (an argument is visible to local users while setup runs)
    #[argh(option)]
    root_password_hash: Option<String>,
    /// allow SSH password login (sshd PasswordAuthentication yes)
    #[argh(switch)]
    ssh_pwauth: bool,
    /// refuse SSH password login (sshd PasswordAuthentication no)
    #[argh(switch)]
    no_ssh_pwauth: bool,
    /// the management NIC (ovirt.reg.nic=)
    #[argh(option)]
    nic: Option<String>,
    /// the management VLAN, ID or ID:NIC (vlan=)
    #[argh(option)]
    vlan: Option<String>,
    /// a static address ADDRESS/PREFIX, or dhcp (ip=)
    #[argh(option)]
    address: Option<String>,
    /// the gateway for --address
    #[argh(option)]
    gateway: Option<String>,
    /// register now, once the settings are written
    #[argh(switch)]
    yes: bool,
}

#[derive(FromArgs)]
#[argh(subcommand, name = "bootstrap")]
/// what the engine runs over SSH to add this host (or oVirt Node): check the machine, one
/// JSON line per check on stdout, then (unless --check-only) enrol it with the engine.
/// Exit 0: done; 2: a check failed, nothing changed; 3: an action failed (the report lists
/// what changed); 4: enrolled, waiting for approval; 1: bad options
struct BootstrapCmd {
    /// the engine, HOST[:PORT]
    #[argh(option)]
    engine: String,
    /// the engine CA's SHA-256 (sha256:<hex>)
    #[argh(option)]
    ca_pin: String,
    /// the enrolment token: an absolute path in the root (a root-owned 0600 file), or `-`
    /// to read it from stdin
    #[argh(option)]
    token_file: Option<String>,
    /// run the checks only: change nothing
    #[argh(switch)]
    check_only: bool,
    /// make the management bridge over this NIC, as boot does (default: no bridge)
    #[argh(option)]
    bridge: Option<String>,
    /// the config store, as ovirt.reg.store= (default: found, or none on a host whose root
    /// file system is persistent)
    #[argh(option)]
    store: Option<String>,
    /// where rpm, dpkg-query and systemctl are looked up (default: $PATH, else
    /// /usr/sbin:/usr/bin:/sbin:/bin)
    #[argh(option)]
    tools_path: Option<String>,
}

#[derive(FromArgs)]
#[argh(subcommand, name = "reenroll")]
/// get a new certificate for this host's keys now (same keys), then finish as boot does
struct ReenrollCmd {}

#[derive(FromArgs)]
#[argh(subcommand, name = "worker")]
/// internal: the unprivileged network worker that boot and register start
struct WorkerCmd {}

#[derive(FromArgs)]
#[argh(subcommand, name = "init")]
/// run as process 1 of an initramfs (what the kernel starts as /init): mount the API
/// filesystems, register, then hand over to the real root (see docs/ARCHITECTURE.md)
struct InitCmd {}

#[derive(FromArgs)]
#[argh(subcommand, name = "install")]
/// install this node to a local disk: GPT, the image in boot slot A, GRUB for BIOS and UEFI
/// with this boot's registration arguments, and a copy of the config store
struct InstallCmd {
    /// the whole disk to install to (e.g. /dev/vda)
    #[argh(option)]
    disk: PathBuf,
    /// the node ISO (default: the medium this live system booted from)
    #[argh(option)]
    image: Option<PathBuf>,
    /// size of each of the two boot slots in MiB (default 1024)
    #[argh(option, default = "1024")]
    slot_size: u64,
    /// overwrite a disk that is not blank
    #[argh(switch)]
    force: bool,
}

#[derive(FromArgs)]
#[argh(subcommand, name = "upgrade")]
/// write a node ISO into the boot slot not running and boot it once on trial; it becomes
/// the default when that boot reaches done, else the running slot boots again
struct UpgradeCmd {
    /// the node ISO (a file or a device)
    #[argh(option)]
    image: PathBuf,
    /// the image's SHA-256 (hex), as the engine gives it; checked before the slot is marked
    #[argh(option)]
    sha256: Option<String>,
}

#[derive(FromArgs)]
#[argh(subcommand, name = "version")]
/// print the version
struct VersionCmd {}

fn main() -> ExitCode {
    // As process 1 the kernel passes unknown kernel arguments as argv: no command line here.
    if rustix::process::getpid().is_init() {
        ovirt_node_reg::init::run();
    }
    let cli: Cli = argh::from_env();
    let kmsg = cli.kmsg;
    logging::init(cli.debug, kmsg);
    match run(&cli) {
        Ok(code) => code,
        Err(e) => {
            console::err_line(&format!(
                "ovirt-node-reg: error: {}",
                escape::controls(&format!("{e:#}"))
            ));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> Result<ExitCode> {
    let root = Root::new(&cli.root);
    let cmdline = cli
        .cmdline
        .clone()
        .unwrap_or_else(|| root.join(paths::PROC_CMDLINE));
    match &cli.command {
        Command::Version(_) => {
            console::line(&format!("ovirt-node-reg {}", env!("CARGO_PKG_VERSION")))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(ConfigCmd {
            command: ConfigSub::Show(c),
        }) => config_show(&root, &cmdline, c),
        Command::Config(ConfigCmd {
            command: ConfigSub::Check(c),
        }) => config_check(c),
        Command::Status(c) => show_status(&root, &cmdline, c.json),
        Command::Boot(c) => Ok(boot(&root, &cmdline, cli.debug, flow::Run::Boot(c.stage))),
        Command::Reenroll(_) => Ok(boot(&root, &cmdline, cli.debug, flow::Run::Reenroll)),
        Command::Register(c) => Ok(finish(&flow::start_register(
            &root,
            &cmdline,
            flow::Overrides {
                engine: c.engine.as_deref(),
                store: c.store.as_deref(),
            },
            cli.debug,
        ))),
        Command::Setup(c) => setup(&root, &cmdline, c, cli.debug),
        Command::Bootstrap(c) => bootstrap(&root, &cmdline, c, cli.debug),
        Command::Init(_) => anyhow::bail!("init runs only as process 1 (rdinit=/init or init=)"),
        Command::Worker(_) => ovirt_node_reg::worker::serve().map(|()| ExitCode::SUCCESS),
        Command::Persist(c) => store_paths(&root, &cmdline, &c.paths, true),
        Command::Unpersist(c) => store_paths(&root, &cmdline, &c.paths, false),
        Command::Restore(_) => restore(&root, &cmdline),
        Command::Install(c) => install(&root, &cmdline, c),
        Command::Upgrade(c) => upgrade(&root, &cmdline, c),
    }
}

fn setup(root: &Root, cmdline: &Path, c: &SetupCmd, debug: bool) -> Result<ExitCode> {
    anyhow::ensure!(
        !(c.ssh_pwauth && c.no_ssh_pwauth),
        "give --ssh-pwauth or --no-ssh-pwauth, not both"
    );
    let opts = ovirt_node_reg::setup::Options {
        engine: c.engine.clone(),
        ca_pin: c.ca_pin.clone(),
        root_password_hash: match c.root_password_hash.as_deref() {
            Some("-") => Some(ovirt_node_reg::setup::hash_from_stdin()?),
            h => h.map(Secret::new),
        },
        ssh_pwauth: (c.ssh_pwauth || c.no_ssh_pwauth).then_some(c.ssh_pwauth),
        nic: c.nic.clone(),
        vlan: c.vlan.clone(),
        address: c.address.clone(),
        gateway: c.gateway.clone(),
        yes: c.yes,
    };
    ovirt_node_reg::setup::run(root, cmdline, &opts, debug)
}

fn bootstrap(root: &Root, cmdline: &Path, c: &BootstrapCmd, debug: bool) -> Result<ExitCode> {
    use ovirt_node_reg::bootstrap;
    let tools_path = c
        .tools_path
        .clone()
        .or_else(|| std::env::var("PATH").ok())
        .unwrap_or_else(|| bootstrap::DEFAULT_TOOLS_PATH.into());
    let opts = bootstrap::Options {
        engine: c.engine.clone(),
        ca_pin: c.ca_pin.clone(),
        token_file: c.token_file.clone(),
        check_only: c.check_only,
        bridge: c.bridge.clone(),
        store: c.store.clone(),
        tools_path,
    };
    bootstrap::run(root, cmdline, &opts, debug)
}

fn load(root: &Root, cmdline: &Path) -> Result<Loaded> {
    sources::load_warned(root, cmdline)
}

fn config_show(root: &Root, cmdline: &Path, c: &ConfigShowCmd) -> Result<ExitCode> {
    let loaded = sources::load(root, cmdline)?;
    if c.json {
        console::line(&serde_json::to_string_pretty(&explain::json(&loaded))?)?;
    } else if c.explain {
        console::out(&explain::explained(&loaded))?;
    } else {
        console::out(&explain::text(&loaded))?;
    }
    Ok(if loaded.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// Longer than any kernel's command line (`COMMAND_LINE_SIZE` is a few KiB): not one.
const CMDLINE_CAP: u64 = 64 * 1024;

fn config_check(c: &ConfigCheckCmd) -> Result<ExitCode> {
    let text = match (&c.cmdline, &c.cmdline_file) {
        (Some(text), None) => text.clone(),
        (None, Some(file)) => read_capped(file)?,
        _ => anyhow::bail!(
            "give the command line with --cmdline \"…\" or --cmdline-file FILE (- for stdin)"
        ),
    };
    let loaded = sources::from_cmdline(&text);
    let mut problems: Vec<String> = loaded.errors.iter().map(|e| e.to_string()).collect();
    problems.extend(loaded.missing());
    for p in &problems {
        console::err_line(&format!(
            "ovirt-node-reg: config check: {}",
            escape::controls(p)
        ));
    }
    for w in &loaded.warnings {
        console::err_line(&format!(
            "ovirt-node-reg: config check: warning: {}",
            escape::controls(w)
        ));
    }
    if !problems.is_empty() {
        return Ok(ExitCode::from(2));
    }
    console::line(&format!(
        "ok: {} settings for ovirt-node-reg",
        loaded.sources.len()
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// A file (or stdin for `-`) of at most [`CMDLINE_CAP`] bytes, as text.
fn read_capped(file: &Path) -> Result<String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    let what = file.display();
    if file == Path::new("-") {
        std::io::stdin()
            .take(CMDLINE_CAP + 1)
            .read_to_end(&mut bytes)
    } else {
        std::fs::File::open(file).and_then(|f| f.take(CMDLINE_CAP + 1).read_to_end(&mut bytes))
    }
    .with_context(|| format!("reading the command line from {what}"))?;
    anyhow::ensure!(
        bytes.len() as u64 <= CMDLINE_CAP,
        "{what}: longer than {CMDLINE_CAP} bytes: not a kernel command line"
    );
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn show_status(root: &Root, cmdline: &Path, json: bool) -> Result<ExitCode> {
    let slots = slots::status(root, &read_cmdline(cmdline)).unwrap_or_else(|e| {
        console::err_line(&format!(
            "ovirt-node-reg: boot slots: {}",
            escape::controls(&format!("{e:#}"))
        ));
        None
    });
    let Some(st) = status::read(root)? else {
        console::line(&format!(
            "no status: ovirt-node-reg has not run since boot ({} is missing)",
            paths::STATUS_FILE
        ))?;
        if let Some(s) = &slots {
            console::line(s.to_text().trim_end())?;
        }
        return Ok(ExitCode::from(3));
    };
    if json {
        let mut value = serde_json::to_value(&st)?;
        if let (Some(s), Some(map)) = (&slots, value.as_object_mut()) {
            map.insert("slots".into(), serde_json::to_value(s)?);
        }
        console::line(&serde_json::to_string_pretty(&value)?)?;
    } else {
        console::line(&st.to_text())?;
        if let Some(s) = &slots {
            console::line(s.to_text().trim_end())?;
        }
    }
    Ok(if st.result == Outcome::Failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn boot(root: &Root, cmdline: &Path, debug: bool, run: flow::Run) -> ExitCode {
    finish(&flow::start(root, cmdline, debug, run))
}

/// The console banner and the exit code of a flow run.
fn finish(st: &Status) -> ExitCode {
    console::err_line(&st.banner());
    exit_code(st.result == Outcome::Failed)
}

fn store_paths(root: &Root, cmdline: &Path, list: &[PathBuf], persist: bool) -> Result<ExitCode> {
    anyhow::ensure!(!list.is_empty(), "give at least one absolute path");
    let store = flow::open_store(root, &load(root, cmdline)?)?;
    if persist {
        return persist_paths(&store, list);
    }
    let mut failed = false;
    for p in list {
        match store.unpersist(p) {
            Ok(()) => console::line(&format!("{}: unpersisted", p.display()))?,
            Err(e) => failed |= path_failed(p, &e),
        }
    }
    Ok(exit_code(failed))
}

/// `persist PATH…`: the paths persisted together, in one store transaction; a refused
/// path is said and left out, the others still persisted.
fn persist_paths(store: &Store, list: &[PathBuf]) -> Result<ExitCode> {
    let mut batch = store.batch();
    let mut done = Vec::new();
    let mut failed = false;
    for p in list {
        match batch.persist(p) {
            Ok(outcome) => done.push((p, outcome)),
            Err(e) => failed |= path_failed(p, &e),
        }
    }
    batch.commit()?;
    for (p, outcome) in done {
        let what = match outcome {
            Persisted::Added => "persisted",
            Persisted::Updated => "updated",
            Persisted::Unchanged => "already persisted, unchanged",
        };
        console::line(&format!("{}: {what}", p.display()))?;
    }
    Ok(exit_code(failed))
}

/// Say why `path` failed, on stderr; true.
fn path_failed(path: &Path, e: &anyhow::Error) -> bool {
    let line = format!("{}: {e:#}", path.display());
    console::err_line(&format!("ovirt-node-reg: {}", escape::controls(&line)));
    true
}

fn exit_code(failed: bool) -> ExitCode {
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn restore(root: &Root, cmdline: &Path) -> Result<ExitCode> {
    let store = flow::open_store(root, &load(root, cmdline)?)?;
    for p in store.restore()? {
        console::line(&format!("restored {}", p.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The kernel command line (empty when it cannot be read: no slot, no arguments).
fn read_cmdline(cmdline: &Path) -> String {
    std::fs::read_to_string(cmdline).unwrap_or_default()
}

fn install(root: &Root, cmdline: &Path, c: &InstallCmd) -> Result<ExitCode> {
    // The store is copied when there is one; a live system without one installs an empty store.
    let store_dir = match flow::open_store(root, &load(root, cmdline)?) {
        Ok(store) => Some(store.dir().to_path_buf()),
        Err(e) => {
            console::err_line(&format!(
                "ovirt-node-reg: install: no config store to copy ({}); the disk's store starts empty",
                escape::controls(&format!("{e:#}"))
            ));
            None
        }
    };
    let options = slots::InstallOptions {
        disk: c.disk.clone(),
        image: c.image.clone(),
        slot_mib: c.slot_size,
        force: c.force,
        store_dir,
        cmdline: read_cmdline(cmdline),
    };
    console::line(&slots::install(root, &options)?)?;
    Ok(ExitCode::SUCCESS)
}

fn upgrade(root: &Root, cmdline: &Path, c: &UpgradeCmd) -> Result<ExitCode> {
    let options = slots::UpgradeOptions {
        image: c.image.clone(),
        sha256: c.sha256.clone(),
        cmdline: read_cmdline(cmdline),
    };
    console::line(&slots::upgrade(root, &options)?)?;
    Ok(ExitCode::SUCCESS)
}
