//! The notes' POSIX shared-memory producer and consumer, with
//! `memory::NamedSegment` (`shm_open` + `ftruncate` + `mmap`, bounds
//! checked): the producer writes "Hello" then "World!" into the object
//! `NAME` (4096 bytes); the consumer prints what is there and removes the
//! name (`shm_unlink`). Byte for byte what the notes' C programs do, so
//! each side also works with the other's C program
//! (`examples/c/posix_shm_{producer,consumer}.c`).
//!
//! ```text
//! cargo run --example posix_shm -- producer /OS
//! cargo run --example posix_shm -- consumer /OS      # HelloWorld!
//! cargo run --example posix_shm                      # both, in two processes
//! ```

use conduit::memory::NamedSegment;

const SIZE: usize = 4096;

fn producer(name: &str) -> Result<(), conduit::Error> {
    // The notes' O_CREAT without O_EXCL: reuse an object left behind.
    let shm = match NamedSegment::create(name, SIZE, 0o666) {
        Ok(s) => s,
        Err(_) => NamedSegment::open(name)?,
    };
    let mut at = 0;
    for message in ["Hello", "World!"] {
        shm.segment().write_at(at, message.as_bytes())?;
        at += message.len();
    }
    // sprintf's terminating zero.
    shm.segment().write_at(at, &[0])?;
    Ok(())
}

fn consumer(name: &str) -> Result<(), conduit::Error> {
    let shm = NamedSegment::open(name)?;
    let mut bytes = vec![0u8; shm.segment().len().min(SIZE)];
    shm.segment().read_at(0, &mut bytes)?;
    let text = bytes.split(|&b| b == 0).next().unwrap_or_default();
    println!("{}", String::from_utf8_lossy(text));
    NamedSegment::unlink(name)?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let role = args.next().unwrap_or_else(|| "both".into());
    let name = args.next().unwrap_or_else(|| format!("/conduit-example-OS-{}", std::process::id()));
    match role.as_str() {
        "producer" => producer(&name)?,
        "consumer" => consumer(&name)?,
        "both" => {
            // Two processes, one after the other, as in the notes.
            let me = std::env::current_exe()?;
            for role in ["producer", "consumer"] {
                let status = std::process::Command::new(&me).args([role, &name]).status()?;
                if !status.success() {
                    return Err(format!("the {role} failed: {status}").into());
                }
            }
        }
        other => return Err(format!("unknown role {other}: producer, consumer or both").into()),
    }
    Ok(())
}
