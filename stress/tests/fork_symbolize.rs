//! A forked child can symbolize (and so finish a leak check) when another thread of the parent
//! was symbolizing at the moment of the fork.
//!
//! Regression: the `backtrace` crate serialises symbolization with a lock of its own, which
//! `fork()` copied held into the child when another thread was inside it: the child's first
//! symbolization waited for ever (a forked child's `LeakCheck::finish` hung, seen in the soak).
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use stress as _; // heapsampler as the global allocator, under the oracle

static STOP: AtomicBool = AtomicBool::new(false);

#[inline(never)]
fn some_function() -> u64 {
    std::hint::black_box(7)
}

fn main() {
    let address = some_function as *const () as usize as u64;
    let busy = std::thread::spawn(move || {
        let mut n = 0u64;
        while !STOP.load(Ordering::Relaxed) {
            // Cleared every time: each call goes through to the symbolizer, not the cache.
            heapsampler::symbolize::clear_cache();
            heapsampler::symbolize::resolve(address + n % 64);
            n += 1;
        }
        n
    });
    let mut hung = 0;
    let children = 100;
    let mut forked = 0;
    while forked < children && hung == 0 {
        forked += 1;
        // SAFETY: the child symbolizes, then leaves with `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            heapsampler::symbolize::clear_cache();
            let frames = heapsampler::symbolize::resolve(address);
            // SAFETY: ends the child at once.
            unsafe { libc::_exit(i32::from(frames.is_empty())) };
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut status = 0;
        loop {
            // SAFETY: our child; a valid out-pointer.
            if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == pid {
                assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
                break;
            }
            if Instant::now() > deadline {
                // Where it hangs, if gdb is there to tell.
                if let Ok(out) = std::process::Command::new("gdb")
                    .args(["-p", &pid.to_string(), "-batch", "-ex", "bt"])
                    .output()
                {
                    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
                }
                // SAFETY: kills and reaps our own child.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, &mut status, 0);
                }
                hung += 1;
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    STOP.store(true, Ordering::Relaxed);
    let resolved = busy.join().unwrap();
    assert_eq!(
        hung, 0,
        "forked child {forked} of {children} hung symbolizing (killed after 5 s; {resolved} \
         symbolizations in the parent's other thread meanwhile)"
    );
    println!("fork_symbolize: 1 passed, 0 failed");
}
