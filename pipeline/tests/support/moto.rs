//! Starts moto's S3 API server on 127.0.0.1 for tests of the S3 code path.
//!
//! `scripts/test.sh` installs moto into `target/test-venv` and points
//! `FAVERECS_MOTO_SERVER` at it; otherwise `moto_server` is looked up on PATH. A
//! missing server fails the test with instructions: the S3 path is never skipped.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running moto server; killed on drop.
pub struct Moto {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind port 0")
        .local_addr()
        .expect("local addr")
        .port()
}

impl Moto {
    /// Starts a server and waits until it answers. It serves one request at a
    /// time (`moto_serial.py`: threaded moto's conditional puts are not atomic,
    /// S3's are), with the Python of the venv that holds `moto_server`.
    pub fn start() -> Moto {
        let exe = std::env::var("FAVERECS_MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        let python = std::path::Path::new(&exe)
            .parent()
            .map(|bin| bin.join("python"))
            .filter(|p| p.exists())
            .map_or_else(|| "python3".into(), |p| p.display().to_string());
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../pipeline/tests/support/moto_serial.py"
        );
        let port = free_port();
        let child = Command::new(&python)
            .args([script, "127.0.0.1", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start moto with {python}: {e}. Run scripts/test.sh, which installs moto (pip install 'moto[server]')")
            });
        let moto = Moto { child, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if moto.request("GET", "/").is_some() {
                return moto;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("moto_server did not answer on port {port} within 60 s");
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket (moto accepts unsigned requests).
    pub fn create_bucket(&self, name: &str) {
        let status = self
            .request("PUT", &format!("/{name}"))
            .expect("moto answers");
        assert!(
            status.starts_with("HTTP/1.1 200") || status.starts_with("HTTP/1.0 200"),
            "create bucket {name}: {status}"
        );
    }

    fn request(&self, method: &str, path: &str) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        out.lines().next().map(str::to_string)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
