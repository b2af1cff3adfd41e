//! The notes' named pipe between **unrelated** processes: the reader makes
//! a FIFO at a path (`mkfifo`), writers that only know the path open it and
//! send typed messages (`conduit::fifo`: each message one frame, whole and
//! never interleaved with another writer's up to `PIPE_BUF`).
//!
//! ```text
//! cargo run --example named_pipe -- reader /tmp/fifo 2 &
//! cargo run --example named_pipe -- writer /tmp/fifo
//! cargo run --example named_pipe -- writer /tmp/fifo
//! cargo run --example named_pipe                   # a reader and two writers
//! ```

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let role = args.next().unwrap_or_else(|| "all".into());
    match role.as_str() {
        "reader" => {
            let path = PathBuf::from(args.next().ok_or("reader PATH COUNT")?);
            let count: usize = args.next().ok_or("reader PATH COUNT")?.parse()?;
            conduit::fifo::create(&path, 0o600)?;
            let rx = conduit::fifo::receiver::<(u32, String)>(&path)?;
            // Ready: the writers may open the path now.
            println!("ready");
            let mut got: Vec<(u32, String)> = (0..count).map(|_| rx.recv()).collect::<Result<_, _>>()?;
            got.sort();
            for (pid, text) in got {
                println!("from pid {pid}: {text}");
            }
            conduit::fifo::remove(&path)?;
        }
        "writer" => {
            let path = PathBuf::from(args.next().ok_or("writer PATH")?);
            let tx = conduit::fifo::sender::<(u32, String)>(&path)?;
            tx.send((std::process::id(), "hello through the named pipe".into()))?;
            tx.flush();
        }
        "all" => {
            use std::io::BufRead;
            let dir = std::env::temp_dir().join(format!("conduit-named-pipe-{}", std::process::id()));
            std::fs::create_dir_all(&dir)?;
            let path = dir.join("fifo");
            let me = std::env::current_exe()?;
            let p = path.to_str().ok_or("path")?;
            // Plain processes: nothing links them but the path.
            let mut reader = std::process::Command::new(&me)
                .args(["reader", p, "2"])
                .stdout(std::process::Stdio::piped())
                .spawn()?;
            let mut out = std::io::BufReader::new(reader.stdout.take().ok_or("stdout")?);
            let mut line = String::new();
            out.read_line(&mut line)?;
            let writers: Vec<_> = (0..2)
                .map(|_| std::process::Command::new(&me).args(["writer", p]).spawn())
                .collect::<Result<_, _>>()?;
            for mut w in writers {
                w.wait()?;
            }
            for line in out.lines() {
                println!("{}", line?);
            }
            reader.wait()?;
            std::fs::remove_dir_all(&dir)?;
        }
        other => return Err(format!("unknown role {other}").into()),
    }
    Ok(())
}
