//! Real servers for integration tests: a private Postfix that delivers to
//! Maildirs and makes real DSNs, Postfix's smtp-sink, a private Dovecot over
//! the same Maildirs, and dnsmasq with a test zone plus two misbehaving DNS
//! responders (SERVFAIL and silence).
//!
//! Every instance lives in its own temporary directory on free loopback
//! ports, so tests run in parallel without sharing state; `Drop` stops it.
//! Nothing here touches /etc/postfix, /etc/dovecot or the network.
//!
//! A missing server binary never skips a test quietly: under `CI=true` the
//! test panics; elsewhere it panics too unless `CARTERO_SKIP_SERVER_TESTS=1`
//! is set, in which case `start()` prints a visible `SKIPPED` line and
//! returns `None`. Tests therefore read
//! `let Some(pf) = Postfix::start() else { return };`.

// Each test crate uses a different subset of the helpers.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::fs;
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Uid and gid that own the virtual Maildirs. Postfix's virtual(8) refuses
/// uids below `virtual_minimum_uid` (100), so root cannot be used; no system
/// user is needed for a numeric id (test-servers.md, Postfix gotcha 8).
pub const VMAIL_ID: u32 = 5000;

/// The virtual mailbox domain whose users get Maildirs. Not a special-use
/// name (RFC 6761 `.test`): cartero's address policy refuses those, and the
/// end-to-end tests import these addresses as contacts.
pub const DOMAIN: &str = "example.org";
/// Mail to this domain is refused by Postfix's error(8) transport: a 5.x DSN.
pub const REFUSED_DOMAIN: &str = "refused.example.net";
/// Mail to this domain is deferred with 4.4.1 until the (short) queue
/// lifetime runs out, then bounced with `Action: failed`, `Status: 4.4.1`.
pub const SOFT_DOMAIN: &str = "soft.example.net";

/// True when running under CI, where a missing server is a failure.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Decides what to do when `what` cannot run here. Returns normally only when
/// the developer asked to skip server tests (and says so loudly).
pub fn unavailable(what: &str, why: &str) {
    let skip = std::env::var("CARTERO_SKIP_SERVER_TESTS").is_ok_and(|v| v == "1");
    if in_ci() || !skip {
        panic!(
            "{what} is needed by this test but {why}. Install it (see .ci/run) \
             or, outside CI only, set CARTERO_SKIP_SERVER_TESTS=1 to skip server tests."
        );
    }
    eprintln!("SKIPPED: {what} unavailable ({why}); CARTERO_SKIP_SERVER_TESTS=1");
}

/// Checks that each binary exists; otherwise see [`unavailable`].
fn have(what: &str, binaries: &[&str]) -> bool {
    for b in binaries {
        if !Path::new(b).exists() {
            unavailable(what, &format!("{b} is missing"));
            return false;
        }
    }
    if !is_root() {
        unavailable(what, "the test is not running as root");
        return false;
    }
    true
}

fn is_root() -> bool {
    // /proc/self is owned by the effective uid.
    use std::os::unix::fs::MetadataExt as _;
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// A loopback port free for both TCP and UDP right now, for a server about
/// to start. Ports come from 20000-32767, below Linux's ephemeral range
/// (32768-60999), so client sockets the kernel numbers itself (our own SMTP
/// connections, say) cannot take one between this check and the server's
/// bind; a per-process counter keeps parallel tests of one binary apart.
pub fn free_port() -> u16 {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    const LOW: usize = 20000;
    const SPAN: usize = 12768;
    // Different test binaries (and other users of the machine) start at
    // different places.
    let start = (std::process::id() as usize).wrapping_mul(7919) % SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (LOW + (start + n) % SPAN) as u16;
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
            && UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
        {
            return port;
        }
    }
    panic!("no free loopback port in {LOW}..{}", LOW + SPAN);
}

/// A fresh temporary directory that daemons running as other users
/// (postfix, vmail, dovenull) can traverse.
fn temp_dir(prefix: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("create temp dir");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod temp dir");
    dir
}

fn user_ids(name: &str) -> (u32, u32) {
    let passwd = fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() > 3 && f[0] == name {
            let uid = f[2].parse().expect("numeric uid");
            let gid = f[3].parse().expect("numeric gid");
            return (uid, gid);
        }
    }
    panic!("system user {name} does not exist (is the package installed?)");
}

fn mkdir(path: &Path, mode: u32, owner: Option<(u32, u32)>) {
    fs::create_dir_all(path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown");
    }
}

fn write(path: &Path, text: &str) {
    fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn process_alive(pid: i32) -> bool {
    // A zombie still has a /proc entry; its state letter is Z.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn pid_from_file(path: &Path) -> Option<i32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn kill(pid: i32, signal: &str) {
    let _ = Command::new("kill")
        .args([signal, &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Waits until a TCP port accepts connections.
fn wait_for_tcp(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    false
}

/// Runs a command with stdin from /dev/null (a daemon that inherits a pipe
/// keeps the caller's pipeline open forever) and returns its combined output.
fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Lists the message files of a Maildir (new/ and cur/), sorted by name.
pub fn maildir_messages(maildir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for sub in ["new", "cur"] {
        if let Ok(entries) = fs::read_dir(maildir.join(sub)) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_file()) {
                    files.push(e.path());
                }
            }
        }
    }
    files.sort();
    files
}

// ---------------------------------------------------------------------------
// Postfix

/// Options for a private Postfix instance.
#[derive(Debug, Clone)]
pub struct PostfixOptions {
    /// Local parts with a Maildir in [`DOMAIN`].
    pub users: Vec<String>,
    /// Queue lifetime for deferred mail; mail to [`SOFT_DOMAIN`] turns into
    /// a 4.4.1 DSN roughly this long after it was accepted.
    pub queue_lifetime: Duration,
    /// Relay mail for every other domain to this loopback port (e.g. an
    /// [`SmtpSink`]); `None`: such mail is refused with a 5.4.4 DSN.
    pub relay_port: Option<u16>,
    /// Offer TLS with a certificate from a throwaway CA
    /// ([`Postfix::ca_cert`]): STARTTLS on both ports, and implicit TLS
    /// (RFC 8314) on [`Postfix::smtps_port`]. Received headers then say
    /// which TLS version and cipher carried the message.
    pub tls: bool,
}

impl Default for PostfixOptions {
    fn default() -> Self {
        Self {
            users: ["alice", "bob", "bounces"].map(String::from).to_vec(),
            queue_lifetime: Duration::from_secs(20),
            relay_port: None,
            tls: false,
        }
    }
}

/// A private Postfix 3.x instance: its own config, queue and data
/// directories in a temp dir, listening on two loopback ports.
///
/// - [`smtp_port`](Self::smtp_port) accepts mail for unknown users of
///   [`DOMAIN`] and then bounces it: a real RFC 3464 DSN to the envelope
///   sender (`smtpd_reject_unlisted_recipient = no`).
/// - [`smtp_port_rejecting`](Self::smtp_port_rejecting) rejects unknown users
///   at RCPT TO with 550 5.1.1, as most MTAs do.
///
/// Users of [`DOMAIN`] get Maildirs at `<tmp>/maildirs/<user>/`;
/// `recipient_delimiter = +` delivers `bounces+TOKEN@example.org` into the
/// `bounces` Maildir with the full address in `X-Original-To` and
/// `Delivered-To`, so a VERP return path in `example.org` brings the DSN
/// back. Mail to [`REFUSED_DOMAIN`] bounces at once (5.1.2), mail to
/// [`SOFT_DOMAIN`] is deferred (4.4.1) until the queue lifetime expires.
pub struct Postfix {
    dir: tempfile::TempDir,
    smtp_port: u16,
    smtp_port_rejecting: u16,
    smtps_port: Option<u16>,
    users: Vec<String>,
}

impl Postfix {
    /// Starts an instance with the default users alice, bob and bounces.
    pub fn start() -> Option<Self> {
        Self::start_with(PostfixOptions::default())
    }

    pub fn start_with(options: PostfixOptions) -> Option<Self> {
        let mut needed = vec!["/usr/sbin/postfix", "/usr/lib/postfix/sbin/master"];
        if options.tls {
            needed.push("/usr/bin/openssl");
        }
        if !have("Postfix", &needed) {
            return None;
        }
        let dir = temp_dir("cartero-postfix-");
        let root = dir.path();
        let (pf_uid, pf_gid) = user_ids("postfix");
        let conf = root.join("conf");
        let queue = root.join("queue");
        let data = root.join("data");
        let maildirs = root.join("maildirs");
        mkdir(&conf, 0o755, None);
        // Gotcha 5: the queue directory belongs to root, data_directory to postfix.
        mkdir(&queue, 0o755, Some((0, 0)));
        mkdir(&data, 0o700, Some((pf_uid, pf_gid)));
        mkdir(&maildirs, 0o755, Some((VMAIL_ID, VMAIL_ID)));
        for user in &options.users {
            // Created up front so tests can watch them before the first delivery.
            for sub in ["", "new", "cur", "tmp"] {
                mkdir(
                    &maildirs.join(user).join(sub),
                    0o700,
                    Some((VMAIL_ID, VMAIL_ID)),
                );
            }
        }

        let smtp_port = free_port();
        let smtp_port_rejecting = free_port();
        let smtps_port = options.tls.then(free_port);
        let tls_cf = if options.tls {
            let tls = root.join("tls");
            mkdir(&tls, 0o755, None);
            make_certificates(&tls);
            format!(
                "smtpd_tls_cert_file = {t}/server.pem\nsmtpd_tls_key_file = {t}/server.key\n\
                 smtpd_tls_security_level = may\nsmtpd_tls_received_header = yes\n",
                t = tls.display()
            )
        } else {
            String::new()
        };
        let smtps_cf = match smtps_port {
            Some(port) => format!(
                "127.0.0.1:{port} inet n - n - - smtpd\n  -o smtpd_tls_wrappermode=yes\n  -o smtpd_reject_unlisted_recipient=no\n\
                 tlsmgr    unix  -       -       n       1000?   1       tlsmgr\n"
            ),
            None => String::new(),
        };

        let mut vmailbox = String::new();
        for user in &options.users {
            writeln!(vmailbox, "{user}@{DOMAIN} {user}/").expect("fmt");
        }
        write(&conf.join("vmailbox"), &vmailbox);
        let transport = format!(
            "{REFUSED_DOMAIN} error:5.1.2 mail for {REFUSED_DOMAIN} is refused by policy\n\
             {SOFT_DOMAIN} retry:4.4.1 {SOFT_DOMAIN} is temporarily unreachable\n"
        );
        let other = match options.relay_port {
            Some(p) => format!("smtp:[127.0.0.1]:{p}"),
            None => "error:5.4.4 tests never leave loopback".to_string(),
        };
        write(&conf.join("transport"), &transport);

        let lifetime = options.queue_lifetime.as_secs().max(1);
        let main_cf = format!(
            "compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
mail_owner = postfix
myhostname = mx.{DOMAIN}
mydomain = {DOMAIN}
myorigin = $myhostname
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
# Gotcha 10: no DNS, nothing leaves loopback.
smtp_dns_support_level = disabled
disable_dns_lookups = yes
# Gotcha 2: no syslog here; postlogd writes the log file.
maillog_file = {root}/maillog
maillog_file_prefixes = {root}
alias_maps =
alias_database =
local_recipient_maps =
biff = no
append_dot_mydomain = no
virtual_mailbox_domains = {DOMAIN}
virtual_mailbox_base = {maildirs}
virtual_mailbox_maps = texthash:{conf}/vmailbox
virtual_uid_maps = static:{VMAIL_ID}
virtual_gid_maps = static:{VMAIL_ID}
# Gotcha 6: virtual(8) dies unless its limit is at least message_size_limit.
message_size_limit = 20480000
virtual_mailbox_limit = 51200000
recipient_delimiter = +
# A `*` entry in transport_maps would also override virtual(8), so every
# other domain goes through default_transport instead.
transport_maps = texthash:{conf}/transport
default_transport = {other}
relay_transport = {other}
# Deferred mail (the soft domain) turns into a DSN quickly.
maximal_queue_lifetime = {lifetime}s
bounce_queue_lifetime = {lifetime}s
queue_run_delay = 2s
minimal_backoff_time = 2s
maximal_backoff_time = 4s
delay_warning_time = 0h
smtpd_banner = $myhostname ESMTP cartero-test
{tls_cf}",
            queue = queue.display(),
            data = data.display(),
            root = root.display(),
            maildirs = maildirs.display(),
            conf = conf.display(),
        );
        write(&conf.join("main.cf"), &main_cf);

        // Gotcha 4: every service runs unchrooted (chroot column n).
        let master_cf = format!(
            "127.0.0.1:{smtp_port} inet n - n - - smtpd
  -o smtpd_reject_unlisted_recipient=no
127.0.0.1:{smtp_port_rejecting} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
{smtps_cf}"
        );
        write(&conf.join("master.cf"), &master_cf);

        let pf = Postfix {
            dir,
            smtp_port,
            smtp_port_rejecting,
            smtps_port,
            users: options.users,
        };
        let (ok, out) = run(Command::new("/usr/sbin/postfix")
            .arg("-c")
            .arg(&conf)
            .arg("start"));
        if !ok {
            // Gotcha 3: the fatal line only goes to a tty; `script` gives it one.
            let (_, detail) = run(Command::new("script")
                .arg("-qc")
                .arg(format!("/usr/sbin/postfix -c {} check", conf.display()))
                .arg("/dev/null"));
            panic!(
                "postfix start failed: {out}\npostfix check: {detail}\nlog:\n{}",
                pf.log()
            );
        }
        for port in [smtp_port, smtp_port_rejecting]
            .into_iter()
            .chain(smtps_port)
        {
            if !wait_for_tcp(port, Duration::from_secs(10)) {
                panic!("postfix is not listening on {port}; log:\n{}", pf.log());
            }
        }
        Some(pf)
    }

    /// Port that accepts unknown users and bounces them with a DSN.
    pub fn smtp_port(&self) -> u16 {
        self.smtp_port
    }

    /// Port that rejects unknown users at RCPT TO (550 5.1.1).
    pub fn smtp_port_rejecting(&self) -> u16 {
        self.smtp_port_rejecting
    }

    /// Implicit TLS port, with [`PostfixOptions::tls`]; as `smtp_port`
    /// otherwise (unknown users get a DSN).
    pub fn smtps_port(&self) -> u16 {
        self.smtps_port
            .expect("start Postfix with PostfixOptions { tls: true, .. }")
    }

    /// The CA that signed the server certificate, with [`PostfixOptions::tls`].
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.path().join("tls/ca.pem")
    }

    pub fn config_dir(&self) -> PathBuf {
        self.dir.path().join("conf")
    }

    /// The Maildir of a user of [`DOMAIN`] (`<tmp>/maildirs/<user>/`).
    pub fn maildir(&self, user: &str) -> PathBuf {
        self.dir.path().join("maildirs").join(user)
    }

    pub fn users(&self) -> &[String] {
        &self.users
    }

    /// Waits until `user`'s Maildir holds at least `n` messages and returns
    /// them (new/ and cur/, sorted). Panics with the mail log on timeout.
    pub fn wait_for_messages(&self, user: &str, n: usize, timeout: Duration) -> Vec<PathBuf> {
        let maildir = self.maildir(user);
        let deadline = Instant::now() + timeout;
        loop {
            let files = maildir_messages(&maildir);
            if files.len() >= n {
                return files;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{} message(s) in {} after {timeout:?}, expected {n}; mail log:\n{}",
                    files.len(),
                    maildir.display(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The instance's mail log so far.
    pub fn log(&self) -> String {
        read_lossy(&self.dir.path().join("maillog"))
    }

    /// Messages still in the queue (`postqueue -p`).
    pub fn queue(&self) -> String {
        run(Command::new("/usr/sbin/postqueue")
            .arg("-c")
            .arg(self.config_dir())
            .arg("-p"))
        .1
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let pid_file = self.dir.path().join("queue/pid/master.pid");
        let pid = pid_from_file(&pid_file);
        let _ = Command::new("/usr/sbin/postfix")
            .arg("-c")
            .arg(self.config_dir())
            .arg("stop")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // Wait for the master so its children stop writing into the temp dir
        // before it is removed.
        if let Some(pid) = pid {
            let deadline = Instant::now() + Duration::from_secs(5);
            while process_alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if process_alive(pid) {
                kill(pid, "-KILL");
            }
        }
    }
}

/// Sends one raw message over plain SMTP to a loopback port with lettre;
/// `Err` carries the server's reply. For tests that need mail in a Maildir
/// without going through cartero's own sender.
pub fn smtp_send(port: u16, from: &str, to: &[&str], message: &[u8]) -> Result<(), String> {
    use lettre::address::{Address, Envelope};
    use lettre::{SmtpTransport, Transport as _};
    let parse = |a: &str| a.parse::<Address>().map_err(|e| format!("{a}: {e}"));
    let from = if from.is_empty() {
        None
    } else {
        Some(parse(from)?)
    };
    let to = to.iter().map(|a| parse(a)).collect::<Result<Vec<_>, _>>()?;
    let envelope = Envelope::new(from, to).map_err(|e| e.to_string())?;
    let transport = SmtpTransport::builder_dangerous("127.0.0.1")
        .port(port)
        .timeout(Some(Duration::from_secs(10)))
        .build();
    transport
        .send_raw(&envelope, message)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// A small RFC 5322 message for tests.
pub fn test_message(from: &str, to: &str, subject: &str, body: &str) -> Vec<u8> {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n\
         Message-ID: <test-{pid}-{n}@cartero.test>\r\n\
         Date: Mon, 23 Nov 2026 05:00:00 +0000\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n",
        pid = std::process::id()
    )
    .into_bytes()
}

// ---------------------------------------------------------------------------
// smtp-sink

/// Postfix's `smtp-sink` on a free loopback port: accepts and discards
/// everything, fast. For benchmarks and load tests.
pub struct SmtpSink {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl SmtpSink {
    pub fn start() -> Option<Self> {
        if !have("smtp-sink", &["/usr/sbin/smtp-sink"]) {
            return None;
        }
        let dir = temp_dir("cartero-sink-");
        let port = free_port();
        let log = fs::File::create(dir.path().join("sink.log")).expect("sink log");
        let child = Command::new("/usr/sbin/smtp-sink")
            .args(["-u", "postfix", "-m", "1000"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("1024")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("spawn smtp-sink");
        let sink = SmtpSink {
            child,
            port,
            _dir: dir,
        };
        assert!(
            wait_for_tcp(port, Duration::from_secs(10)),
            "smtp-sink did not listen on {port}"
        );
        Some(sink)
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// DNS

/// Records for [`Dns::start`], written as dnsmasq options. Every other name
/// under `.test` answers NXDOMAIN (`local=/test/`).
#[derive(Debug, Clone, Default)]
pub struct Zone {
    lines: Vec<String>,
}

impl Zone {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn mx(mut self, domain: &str, preference: u16, host: &str) -> Self {
        self.lines
            .push(format!("mx-host={domain},{host},{preference}"));
        self
    }

    /// An A or AAAA record (dnsmasq's host-record picks by the address).
    pub fn addr(mut self, name: &str, ip: &str) -> Self {
        self.lines.push(format!("host-record={name},{ip}"));
        self
    }

    /// RFC 7505 null MX: preference 0, exchange "." (wire form: 0x0000 then
    /// the root label 0x00), written as a raw record since dnsmasq's
    /// mx-host cannot express it.
    pub fn null_mx(mut self, domain: &str) -> Self {
        self.lines.push(format!("dns-rr={domain},15,000000"));
        self
    }

    /// A TXT record: makes a name exist without any mail-related record.
    pub fn txt(mut self, name: &str, text: &str) -> Self {
        self.lines.push(format!("txt-record={name},\"{text}\""));
        self
    }

    /// The zone the MX tests use:
    /// - `mx.test`: MX 10 mail.mx.test, MX 20 backup.mx.test (both with A)
    /// - `nullmx.test`: null MX
    /// - `aonly.test`: no MX, an A record (implicit MX)
    /// - `aaaaonly.test`: no MX, an AAAA record
    /// - `dangling.test`: MX to nowhere.dangling.test, which does not exist
    /// - `txtonly.test`: exists, but neither MX nor A/AAAA
    /// - `brokenmx.test`: MX to mail.servfail.test, whose lookup fails
    /// - `nxdomain.test` and everything else under `.test`: NXDOMAIN, except
    ///   names under `servfail.test` (SERVFAIL) and `silent.test` (no answer)
    pub fn standard() -> Self {
        Self::new()
            .mx("mx.test", 10, "mail.mx.test")
            .mx("mx.test", 20, "backup.mx.test")
            .addr("mail.mx.test", "192.0.2.10")
            .addr("backup.mx.test", "192.0.2.11")
            .null_mx("nullmx.test")
            .addr("aonly.test", "192.0.2.20")
            .addr("aaaaonly.test", "2001:db8::20")
            .mx("dangling.test", 10, "nowhere.dangling.test")
            .txt("txtonly.test", "v=spf1 -all")
            .mx("brokenmx.test", 10, "mail.servfail.test")
    }
}

/// dnsmasq on a free loopback port serving a [`Zone`], and two misbehaving
/// servers beside it: one answering every query with SERVFAIL, one that
/// never answers (a timeout for the client). dnsmasq cannot do either
/// itself: forwarding to a dead port gives a timeout, not SERVFAIL.
pub struct Dns {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    servfail: Responder,
    silent: Responder,
}

impl Dns {
    pub fn start(zone: &Zone) -> Option<Self> {
        if !have("dnsmasq", &["/usr/sbin/dnsmasq"]) {
            return None;
        }
        let dir = temp_dir("cartero-dns-");
        let port = free_port();
        let servfail = Responder::start(ResponderKind::ServFail);
        let silent = Responder::start(ResponderKind::Silent);
        let conf = dir.path().join("dnsmasq.conf");
        let log = dir.path().join("dnsmasq.log");
        let mut text = format!(
            "port={port}
listen-address=127.0.0.1
bind-interfaces
# Keep every query off the network: no upstream, .test answered locally.
no-resolv
no-hosts
no-poll
local=/test/
# dnsmasq gives local records TTL 0 unless told; the cache tests need one.
local-ttl=300
neg-ttl=60
user=root
# Its own pid file: the default /var/run/dnsmasq.pid is shared by every
# instance, and a second one refuses to start while the first runs.
pid-file={pid}
log-queries
log-facility={log}
# Names under these zones go to the misbehaving servers, so a zone served
# by dnsmasq can point at hosts whose lookups fail.
server=/servfail.test/127.0.0.1#{servfail_port}
server=/silent.test/127.0.0.1#{silent_port}
",
            log = log.display(),
            pid = dir.path().join("dnsmasq.pid").display(),
            servfail_port = servfail.addr.port(),
            silent_port = silent.addr.port(),
        );
        for line in &zone.lines {
            text.push_str(line);
            text.push('\n');
        }
        write(&conf, &text);
        let out = fs::File::create(dir.path().join("dnsmasq.out")).expect("dnsmasq output");
        let child = Command::new("/usr/sbin/dnsmasq")
            .arg("--keep-in-foreground")
            .arg(format!("--conf-file={}", conf.display()))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            .spawn()
            .expect("spawn dnsmasq");
        let dns = Dns {
            child,
            port,
            dir,
            servfail,
            silent,
        };
        // dnsmasq also listens on TCP; that tells us it is up.
        if !wait_for_tcp(port, Duration::from_secs(10)) {
            panic!(
                "dnsmasq did not start on {port}:\n{}\n{}",
                read_lossy(&dns.dir.path().join("dnsmasq.out")),
                dns.log()
            );
        }
        Some(dns)
    }

    /// `127.0.0.1:PORT` of dnsmasq.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// A server that answers every query with SERVFAIL (RCODE 2).
    pub fn servfail_addr(&self) -> SocketAddr {
        self.servfail.addr
    }

    /// A server that reads queries and never answers.
    pub fn silent_addr(&self) -> SocketAddr {
        self.silent.addr
    }

    /// Queries the misbehaving servers have received so far.
    pub fn servfail_queries(&self) -> usize {
        self.servfail.queries.load(Ordering::Relaxed)
    }

    pub fn log(&self) -> String {
        read_lossy(&self.dir.path().join("dnsmasq.log"))
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone, Copy, PartialEq)]
enum ResponderKind {
    ServFail,
    Silent,
}

/// A UDP (and TCP) DNS responder on its own loopback port, run by threads
/// until dropped.
struct Responder {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    queries: Arc<AtomicUsize>,
    threads: Vec<JoinHandle<()>>,
}

impl Responder {
    fn start(kind: ResponderKind) -> Self {
        let (udp, tcp) = loop {
            let port = free_port();
            if let (Ok(u), Ok(t)) = (
                UdpSocket::bind((Ipv4Addr::LOCALHOST, port)),
                TcpListener::bind((Ipv4Addr::LOCALHOST, port)),
            ) {
                break (u, t);
            }
        };
        let addr = udp.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let queries = Arc::new(AtomicUsize::new(0));
        udp.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        tcp.set_nonblocking(true).expect("nonblocking");
        let udp_thread = {
            let (stop, queries) = (stop.clone(), queries.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, peer)) = udp.recv_from(&mut buf) else {
                        continue;
                    };
                    queries.fetch_add(1, Ordering::Relaxed);
                    if kind == ResponderKind::ServFail
                        && let Some(reply) = servfail_reply(&buf[..n])
                    {
                        let _ = udp.send_to(&reply, peer);
                    }
                }
            })
        };
        let tcp_thread = {
            let (stop, queries) = (stop.clone(), queries.clone());
            std::thread::spawn(move || {
                // Connections are held open and never answered (silent) or
                // answered with SERVFAIL, framed with the RFC 1035 §4.2.2
                // two-octet length.
                let mut held = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match tcp.accept() {
                        Ok((mut stream, _)) => {
                            queries.fetch_add(1, Ordering::Relaxed);
                            if kind == ResponderKind::ServFail {
                                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                                let mut len = [0u8; 2];
                                if stream.read_exact(&mut len).is_ok() {
                                    let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
                                    if stream.read_exact(&mut q).is_ok()
                                        && let Some(reply) = servfail_reply(&q)
                                    {
                                        let mut framed =
                                            (reply.len() as u16).to_be_bytes().to_vec();
                                        framed.extend_from_slice(&reply);
                                        let _ = stream.write_all(&framed);
                                    }
                                }
                            }
                            held.push(stream);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            })
        };
        Responder {
            addr,
            stop,
            queries,
            threads: vec![udp_thread, tcp_thread],
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The reply to a DNS query: same ID and question, QR set, RCODE 2
/// (SERVFAIL, RFC 1035 §4.1.1), no records. `None` for a malformed query.
fn servfail_reply(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    // Walk the first question's name (uncompressed in a query), then QTYPE
    // and QCLASS.
    let mut i = 12;
    loop {
        let len = *query.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        if len & 0xC0 != 0 {
            return None;
        }
        i += len;
    }
    let end = i + 4;
    if end > query.len() {
        return None;
    }
    let mut reply = query[..end].to_vec();
    reply[2] = 0x80 | (query[2] & 0x79); // QR, opcode and RD from the query
    reply[3] = 0x80 | 0x02; // RA, RCODE = SERVFAIL
    reply[4..6].copy_from_slice(&[0, 1]); // QDCOUNT 1
    reply[6..12].fill(0); // no answer, authority or additional records
    Some(reply)
}

// ---------------------------------------------------------------------------
// Dovecot

/// The password of every user of a test [`Dovecot`].
pub const IMAP_PASSWORD: &str = "imap-test-secret";

/// A private Dovecot 2.3 IMAP server over existing Maildirs (usually a
/// [`Postfix`] instance's): its own base_dir and log file, passwd-file users
/// whose homes are the Maildirs (`mail_location = maildir:~`), plaintext
/// login allowed. With TLS, a throwaway CA signs a certificate for
/// 127.0.0.1 and `localhost`; [`ca_cert`](Self::ca_cert) is the CA to trust.
pub struct Dovecot {
    child: Child,
    dir: tempfile::TempDir,
    imap_port: u16,
    imaps_port: Option<u16>,
}

impl Dovecot {
    /// Plain IMAP only (`ssl = no`).
    pub fn start(users: &[(&str, PathBuf)]) -> Option<Self> {
        Self::launch(users, false)
    }

    /// IMAP with STARTTLS on [`imap_port`](Self::imap_port) and IMAPS on
    /// [`imaps_port`](Self::imaps_port).
    pub fn start_with_tls(users: &[(&str, PathBuf)]) -> Option<Self> {
        Self::launch(users, true)
    }

    fn launch(users: &[(&str, PathBuf)], tls: bool) -> Option<Self> {
        let mut needed = vec!["/usr/sbin/dovecot"];
        if tls {
            needed.push("/usr/bin/openssl");
        }
        if !have("Dovecot", &needed) {
            return None;
        }
        let dir = temp_dir("cartero-dovecot-");
        let root = dir.path();
        let mut passwd = String::new();
        for (user, home) in users {
            writeln!(
                passwd,
                "{user}:{{PLAIN}}{IMAP_PASSWORD}:{VMAIL_ID}:{VMAIL_ID}::{}::",
                home.display()
            )
            .expect("fmt");
        }
        write(&root.join("users"), &passwd);
        let imap_port = free_port();
        let imaps_port = tls.then(free_port);
        let ssl = if tls {
            make_certificates(root);
            let dh = if Path::new("/usr/share/dovecot/dh.pem").exists() {
                "ssl_dh = </usr/share/dovecot/dh.pem\n"
            } else {
                ""
            };
            format!(
                "ssl = yes\nssl_cert = <{root}/server.pem\nssl_key = <{root}/server.key\n{dh}",
                root = root.display()
            )
        } else {
            "ssl = no\n".to_string()
        };
        let imaps = match imaps_port {
            Some(p) => format!(
                "  inet_listener imaps {{\n    address = 127.0.0.1\n    port = {p}\n    ssl = yes\n  }}\n"
            ),
            None => "  inet_listener imaps {\n    port = 0\n  }\n".to_string(),
        };
        // Gotcha: one-line sections (`x { a = b }`) are a syntax error.
        let conf = format!(
            "base_dir = {root}/run
state_dir = {root}/state
instance_name = cartero-test-{imap_port}
protocols = imap
listen = 127.0.0.1
{ssl}disable_plaintext_auth = no
auth_mechanisms = plain login
log_path = {root}/dovecot.log
mail_location = maildir:~
first_valid_uid = 100
default_login_user = dovenull
default_internal_user = dovecot
namespace inbox {{
  inbox = yes
  separator = .
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {root}/users
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
{imaps}}}
service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
",
            root = root.display()
        );
        write(&root.join("dovecot.conf"), &conf);
        let out = fs::File::create(root.join("dovecot.out")).expect("dovecot output");
        let child = Command::new("/usr/sbin/dovecot")
            .arg("-F")
            .arg("-c")
            .arg(root.join("dovecot.conf"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            .spawn()
            .expect("spawn dovecot");
        let dovecot = Dovecot {
            child,
            dir,
            imap_port,
            imaps_port,
        };
        for port in std::iter::once(imap_port).chain(imaps_port) {
            if !wait_for_tcp(port, Duration::from_secs(10)) {
                panic!(
                    "dovecot did not listen on {port}:\n{}\n{}",
                    read_lossy(&dovecot.dir.path().join("dovecot.out")),
                    dovecot.log()
                );
            }
        }
        Some(dovecot)
    }

    /// Plain IMAP (STARTTLS offered when started with TLS).
    pub fn imap_port(&self) -> u16 {
        self.imap_port
    }

    /// IMAP over TLS from the first byte; `None` without TLS.
    pub fn imaps_port(&self) -> Option<u16> {
        self.imaps_port
    }

    /// PEM file of the CA that signed the server certificate.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    pub fn log(&self) -> String {
        read_lossy(&self.dir.path().join("dovecot.log"))
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        // SIGTERM lets the master stop its children before the dir goes.
        kill(self.child.id() as i32, "-TERM");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CA and a server certificate for 127.0.0.1/localhost signed by it
/// (rustls does not accept a self-signed leaf as its own trust anchor).
fn make_certificates(dir: &Path) {
    let d = dir.display();
    let ext = dir.join("server.ext");
    write(
        &ext,
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
    );
    let steps = [
        format!(
            "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=cartero-test-CA \
             -keyout {d}/ca.key -out {d}/ca.pem"
        ),
        format!(
            "openssl req -newkey rsa:2048 -nodes -subj /CN=localhost \
             -keyout {d}/server.key -out {d}/server.csr"
        ),
        format!(
            "openssl x509 -req -in {d}/server.csr -CA {d}/ca.pem -CAkey {d}/ca.key \
             -CAcreateserial -days 2 -extfile {d}/server.ext -out {d}/server.pem"
        ),
    ];
    for step in steps {
        let (ok, out) = run(Command::new("sh").arg("-c").arg(&step));
        assert!(ok, "{step}: {out}");
    }
    // Dovecot reads the key as root before dropping privileges.
    fs::set_permissions(dir.join("server.key"), fs::Permissions::from_mode(0o600))
        .expect("chmod key");
}

// ---------------------------------------------------------------------------
// A recording SMTP server

/// One message as an [`SmtpRecorder`] accepted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// The DATA content with dot-stuffing undone (RFC 5321 §4.5.2).
    pub data: Vec<u8>,
}

/// A small in-test SMTP server on a free loopback port that records every
/// accepted message, for tests that count what arrived (the kill-and-resume
/// test) rather than deliver it. Recipients whose local part starts with
/// `reject` get `550 5.1.1`, with `tempfail` `451 4.3.0`, so retry and
/// failure paths can be driven. Plain text, no AUTH; EHLO advertises
/// 8BITMIME, SMTPUTF8 and SIZE.
pub struct SmtpRecorder {
    port: u16,
    received: Arc<std::sync::Mutex<Vec<Received>>>,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    hold: Arc<Hold>,
}

/// Messages to one domain that the recorder does not answer (the reply to
/// the end of DATA) until [`SmtpRecorder::release`]: a slow or hanging
/// receiver, without timings.
#[derive(Default)]
struct Hold {
    domain: Option<String>,
    released: std::sync::Mutex<bool>,
    changed: std::sync::Condvar,
    /// Messages waiting for their reply now.
    waiting: AtomicUsize,
}

impl Hold {
    fn applies(&self, rcpts: &[String]) -> bool {
        self.domain.as_ref().is_some_and(|d| {
            rcpts
                .iter()
                .any(|r| r.to_ascii_lowercase().ends_with(&format!("@{d}")))
        })
    }

    fn wait(&self) {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let mut released = self.released.lock().unwrap_or_else(|p| p.into_inner());
        while !*released {
            released = self
                .changed
                .wait(released)
                .unwrap_or_else(|p| p.into_inner());
        }
        self.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

impl SmtpRecorder {
    pub fn start() -> Self {
        Self::start_with_hold(None)
    }

    /// A recorder that accepts messages to `domain` only once
    /// [`release`](Self::release)d: until then each waits for its reply.
    pub fn start_holding(domain: &str) -> Self {
        Self::start_with_hold(Some(domain.to_ascii_lowercase()))
    }

    fn start_with_hold(domain: Option<String>) -> Self {
        let hold = Arc::new(Hold {
            domain,
            ..Hold::default()
        });
        let port = free_port();
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("bind recorder");
        listener.set_nonblocking(true).expect("nonblocking");
        let received = Arc::new(std::sync::Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (received, connections, stop, hold) = (
                received.clone(),
                connections.clone(),
                stop.clone(),
                hold.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            connections.fetch_add(1, Ordering::Relaxed);
                            let (received, hold) = (received.clone(), hold.clone());
                            std::thread::spawn(move || {
                                let _ = smtp_session(stream, &received, &hold);
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        SmtpRecorder {
            port,
            received,
            connections,
            stop,
            thread: Some(thread),
            hold,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Messages to the held domain waiting for their reply now.
    pub fn held(&self) -> usize {
        self.hold.waiting.load(Ordering::SeqCst)
    }

    /// Answers the held messages, and every later one at once.
    pub fn release(&self) {
        *self.hold.released.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.hold.changed.notify_all();
    }

    /// Every message accepted so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// How many times each recipient was accepted.
    pub fn count_by_recipient(&self) -> std::collections::BTreeMap<String, usize> {
        let mut counts = std::collections::BTreeMap::new();
        for m in self.received() {
            for r in m.rcpt_to {
                *counts.entry(r).or_default() += 1;
            }
        }
        counts
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }
}

impl Drop for SmtpRecorder {
    fn drop(&mut self) {
        self.release();
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The address inside `MAIL FROM:<...>` / `RCPT TO:<...>`, parameters dropped.
fn path_arg(rest: &str) -> String {
    let rest = rest.trim();
    match (rest.find('<'), rest.find('>')) {
        (Some(a), Some(b)) if a < b => rest[a + 1..b].to_string(),
        _ => rest.split_whitespace().next().unwrap_or("").to_string(),
    }
}

fn smtp_session(
    stream: std::net::TcpStream,
    received: &std::sync::Mutex<Vec<Received>>,
    hold: &Hold,
) -> std::io::Result<()> {
    use std::io::{BufRead as _, BufReader};
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut out = stream.try_clone()?;
    let mut input = BufReader::new(stream);
    out.write_all(b"220 recorder.test ESMTP cartero-test\r\n")?;
    let mut from: Option<String> = None;
    let mut rcpts: Vec<String> = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        let upper = text.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") {
            b"250-recorder.test\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 52428800\r\n"
        } else if upper.starts_with("HELO") {
            b"250 recorder.test\r\n"
        } else if upper.starts_with("MAIL FROM:") {
            from = Some(path_arg(&text[10..]));
            rcpts.clear();
            b"250 2.1.0 ok\r\n"
        } else if upper.starts_with("RCPT TO:") {
            let rcpt = path_arg(&text[8..]);
            let local = rcpt.split('@').next().unwrap_or("").to_ascii_lowercase();
            if from.is_none() {
                b"503 5.5.1 MAIL first\r\n"
            } else if local.starts_with("reject") {
                b"550 5.1.1 no such user here\r\n"
            } else if local.starts_with("tempfail") {
                b"451 4.3.0 try again later\r\n"
            } else {
                rcpts.push(rcpt);
                b"250 2.1.5 ok\r\n"
            }
        } else if upper == "DATA" {
            if rcpts.is_empty() {
                b"554 5.5.1 no valid recipients\r\n"
            } else {
                out.write_all(b"354 end with <CRLF>.<CRLF>\r\n")?;
                let mut data = Vec::new();
                loop {
                    line.clear();
                    if input.read_until(b'\n', &mut line)? == 0 {
                        return Ok(()); // connection lost mid-DATA: nothing accepted
                    }
                    if line == b".\r\n" || line == b".\n" {
                        break;
                    }
                    let unstuffed = if line.starts_with(b".") {
                        &line[1..]
                    } else {
                        &line[..]
                    };
                    data.extend_from_slice(unstuffed);
                }
                if hold.applies(&rcpts) {
                    hold.wait();
                }
                received
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(Received {
                        mail_from: from.take().unwrap_or_default(),
                        rcpt_to: std::mem::take(&mut rcpts),
                        data,
                    });
                b"250 2.0.0 queued\r\n"
            }
        } else if upper == "RSET" {
            from = None;
            rcpts.clear();
            b"250 2.0.0 ok\r\n"
        } else if upper == "NOOP" {
            b"250 2.0.0 ok\r\n"
        } else if upper == "QUIT" {
            out.write_all(b"221 2.0.0 bye\r\n")?;
            return Ok(());
        } else {
            b"502 5.5.2 command not implemented\r\n"
        };
        out.write_all(reply)?;
    }
}
