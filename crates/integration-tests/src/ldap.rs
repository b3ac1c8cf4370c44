//! A throw-away OpenLDAP `slapd` (Debian's `slapd` package), configured
//! from a `slapd.conf` in a temporary directory, loaded from an LDIF with
//! `slapadd` before it starts, listening on 127.0.0.1 and a free port. The
//! system's slapd service is never touched.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The directory's suffix.
pub const LDAP_SUFFIX: &str = "dc=example,dc=org";
/// Its root DN (the tests' service account) and password.
pub const LDAP_ADMIN_DN: &str = "cn=admin,dc=example,dc=org";
pub const LDAP_ADMIN_PASSWORD: &str = "admin-secret";

const SLAPD: &str = "/usr/sbin/slapd";
const SLAPADD: &str = "/usr/sbin/slapadd";

/// A running `slapd`, killed on drop.
pub struct LdapServer {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
}

impl LdapServer {
    /// Starts one with the standard schemas, `schema` (extra schema text,
    /// may be empty) and the entries of `ldif` (the base entry
    /// `dc=example,dc=org` included). `None` when slapd is not installed
    /// (`apt-get install slapd ldap-utils`).
    pub fn start(schema: &str, ldif: &str) -> Option<LdapServer> {
        if !std::path::Path::new(SLAPD).exists() {
            return None;
        }
        let dir = tempfile::tempdir().expect("a temp dir can be created");
        let path = |name: &str| dir.path().join(name).display().to_string();
        std::fs::create_dir(dir.path().join("db")).expect("db dir");
        std::fs::write(path("extra.schema"), schema).expect("schema written");
        std::fs::write(path("data.ldif"), ldif).expect("ldif written");
        let config = format!(
            "include /etc/ldap/schema/core.schema\n\
             include /etc/ldap/schema/cosine.schema\n\
             include /etc/ldap/schema/inetorgperson.schema\n\
             include {extra}\n\
             pidfile {pid}\n\
             modulepath /usr/lib/ldap\n\
             moduleload back_mdb\n\
             database mdb\n\
             maxsize 10485760\n\
             suffix \"{LDAP_SUFFIX}\"\n\
             rootdn \"{LDAP_ADMIN_DN}\"\n\
             rootpw {LDAP_ADMIN_PASSWORD}\n\
             directory {db}\n\
             access to attrs=userPassword by anonymous auth by * none\n\
             access to * by * read\n",
            extra = path("extra.schema"),
            pid = path("slapd.pid"),
            db = path("db"),
        );
        std::fs::write(path("slapd.conf"), config).expect("config written");
        let added = Command::new(SLAPADD)
            .args(["-f", &path("slapd.conf"), "-l", &path("data.ldif")])
            .output()
            .expect("slapadd runs");
        assert!(
            added.status.success(),
            "slapadd: {}",
            String::from_utf8_lossy(&added.stderr)
        );
        let mut server = LdapServer {
            child: None,
            port: crate::server::free_port(),
            dir,
        };
        server.spawn();
        Some(server)
    }

    fn spawn(&mut self) {
        let conf = self.dir.path().join("slapd.conf");
        let url = format!("ldap://127.0.0.1:{}/", self.port);
        // `-d 0`: stay in the foreground (so the child is slapd itself).
        let child = Command::new(SLAPD)
            .arg("-f")
            .arg(&conf)
            .args(["-h", &url, "-d", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("slapd starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "slapd did not start listening");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `ldap://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// Stops it (SIGKILL): the tests of "the directory went away".
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for LdapServer {
    fn drop(&mut self) {
        self.stop();
    }
}
