//! The notes' socket programs, run as the examples they are: the Date
//! server answers any plain TCP client, the Date client reads any plain
//! server, and the echo server answers in its three styles.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// An example's binary (cargo builds examples before it runs this test).
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("examples").join(name)
}

/// A running example, killed when dropped (a failed test leaves none).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start a server example; returns it and the address it printed.
fn serve(name: &str, args: &[&str]) -> (Running, String) {
    let mut child = Command::new(example(name)).args(args).stdout(Stdio::piped()).spawn().expect("start the example");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    (Running(child), line.trim().to_string())
}

#[test]
fn the_date_server_answers_a_plain_tcp_client_with_one_line_then_closes() {
    let (_server, addr) = serve("date_server", &["tcp:127.0.0.1:0"]);
    let port = addr.rsplit(':').next().unwrap();
    for _ in 0..2 {
        let mut s = TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
        let mut all = String::new();
        s.read_to_string(&mut all).unwrap();
        let lines: Vec<&str> = all.lines().collect();
        assert_eq!(lines.len(), 1, "{all:?}");
        assert!(lines[0].contains(" UTC 2"), "a date line: {all:?}");
        assert!(all.ends_with('\n'));
    }
}

#[test]
fn the_date_client_prints_the_line_of_a_plain_server() {
    let plain = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = plain.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = plain.accept().unwrap();
        s.write_all(b"Thu Jan  1 00:00:00 UTC 1970\n").unwrap();
    });
    let out = Command::new(example("date_client")).arg(format!("tcp:127.0.0.1:{port}")).output().unwrap();
    server.join().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "Thu Jan  1 00:00:00 UTC 1970\n");
}

#[test]
fn the_echo_server_answers_in_all_three_styles() {
    for style in ["iterative", "threads", "processes"] {
        let (_server, addr) = serve("echo_server", &[style, "tcp:127.0.0.1:0"]);
        let clients: Vec<_> = (0..3)
            .map(|i| {
                Command::new(example("echo_client"))
                    .args([addr.as_str(), &format!("hello{i}"), "world"])
                    .output()
                    .unwrap()
            })
            .collect();
        for (i, out) in clients.into_iter().enumerate() {
            assert!(out.status.success(), "{style}: {out:?}");
            assert_eq!(String::from_utf8(out.stdout).unwrap(), format!("HELLO{i}\nWORLD\n"), "{style}");
        }
    }
}

/// Run an example to its end; its standard output.
fn run(name: &str, args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new(example(name))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the example");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{name} {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_bounded_buffer_uses_all_ten_slots_between_two_processes() {
    assert_eq!(run("bounded_buffer", &[], None), "buffer held at most 10 items; consumer summed 499500\n");
}

#[test]
fn the_system_v_program_receives_the_lowest_type_first() {
    assert_eq!(run("sysv_queue", &[], None), "type 1: first\ntype 2: second\ntype 3: third\n");
}

#[test]
fn a_signal_handler_becomes_a_message() {
    let out = run("signal_message", &[], None);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].starts_with("SIGUSR1 from pid ") && lines[0].ends_with("value None"), "{out}");
    assert!(lines[1].starts_with("SIGUSR2 from pid ") && lines[1].ends_with("value Some(42)"), "{out}");
}

#[test]
fn the_fork_examples_print_pids_make_four_processes_and_run_a_shell_loop() {
    assert!(run("fork", &["pid"], None).starts_with("my pid is "));
    let pc = run("fork", &["parent-child"], None);
    let w: Vec<&str> = pc.split_whitespace().collect();
    assert_eq!((w[0], w[2], w[3]), ("parent", "has", "child"));
    assert_ne!(w[1], w[4], "two processes");
    assert!(run("fork", &["four"], None).starts_with("4 processes: "));
    let shell = run("fork", &["shell"], Some("true; false\necho hi\n"));
    assert_eq!(shell, "[true] exited with 0\n[false] exited with 1\nhi\n[echo hi] exited with 0\n");
}

/// A C program built for one test, in a directory of its own that goes
/// with it (pass `&CProgram` where a program path is wanted).
struct CProgram {
    dir: PathBuf,
    exe: PathBuf,
}

impl AsRef<std::ffi::OsStr> for CProgram {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.exe.as_os_str()
    }
}

impl Drop for CProgram {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Build the notes' C program `examples/c/NAME.c` with `cc`.
fn build_c(name: &str) -> CProgram {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples").join("c").join(format!("{name}.c"));
    let dir = std::env::temp_dir().join(format!("conduit-examples-c-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join(name);
    let program = CProgram { dir, exe };
    let out = Command::new("cc").arg("-O2").arg("-o").arg(&program.exe).arg(&src).arg("-lrt").output().expect("cc");
    assert!(out.status.success(), "cc {}: {}", src.display(), String::from_utf8_lossy(&out.stderr));
    program
}

fn output_of(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_posix_shared_memory_producer_and_consumer_work_with_the_notes_c_programs_both_ways() {
    let (c_producer, c_consumer) = (build_c("posix_shm_producer"), build_c("posix_shm_consumer"));
    let name = format!("/conduit-example-shm-{}", std::process::id());
    // conduit with itself, in two processes.
    assert_eq!(run("posix_shm", &[], None), "HelloWorld!\n");
    // The C producer, conduit's consumer (which removes the object).
    output_of(Command::new(&c_producer).arg(&name));
    assert_eq!(run("posix_shm", &["consumer", &name], None), "HelloWorld!\n");
    // conduit's producer, the C consumer.
    assert_eq!(run("posix_shm", &["producer", &name], None), "");
    assert_eq!(output_of(Command::new(&c_consumer).arg(&name)), "HelloWorld!\n");
    assert!(!std::path::Path::new(&format!("/dev/shm{name}")).exists(), "the consumer unlinked it");
}

#[test]
fn the_ordinary_pipe_says_what_the_notes_c_program_says() {
    let c = build_c("pipe");
    assert_eq!(output_of(&mut Command::new(&c)), "read Greetings\n");
    assert_eq!(run("pipe", &[], None), "read Greetings\n");
}

#[test]
fn the_named_pipe_joins_unrelated_processes() {
    let out = run("named_pipe", &[], None);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines.iter().all(|l| l.starts_with("from pid ") && l.ends_with(": hello through the named pipe")), "{out}");
    assert_ne!(lines[0], lines[1], "two writers");
}

#[test]
fn the_notes_c_fork_exec_wait_runs_the_conduit_fork_example_as_its_child() {
    let c = build_c("fork_exec");
    let out = output_of(Command::new(&c).arg(example("fork")).arg("pid"));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    let child_pid = lines[0].strip_prefix("my pid is ").expect("the child's line");
    assert_eq!(lines[1], format!("child {child_pid} complete, status 0"));
}

#[test]
fn mach_msg_send_receive_and_rpc_with_exactly_one_reply() {
    assert_eq!(
        run("msg_rpc", &[], None),
        "server logged: hello\nmsg_rpc: length 15\nmsg_rpc: the server dropped the reply right: NoReply\n"
    );
}
