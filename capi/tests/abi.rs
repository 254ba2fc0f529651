//! The C ABI called as C would call it, from Rust: misuse gives a clear status and message
//! each time (`capi/tests/cpp/abi_test.cpp` covers the same and the C++ API, with g++).

use std::ffi::{c_void, CStr, CString};
use std::ptr::{null, null_mut};
use std::time::{Duration, Instant};

use capnp_shm_transport_c::*;
use CstStatus::*;

/// A unique channel name, removed on drop (even when the test fails).
struct Name(CString);

impl Name {
    fn new(test: &str) -> Name {
        Name(CString::new(format!("cst-capi-{}-{test}", std::process::id())).unwrap())
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        // SAFETY: a NUL-terminated name; a null `removed` is allowed.
        unsafe { cst_remove(self.0.as_ptr(), null_mut()) };
    }
}

fn last_error() -> String {
    // SAFETY: cst_last_error returns this thread's NUL-terminated message.
    unsafe { CStr::from_ptr(cst_last_error()) }
        .to_string_lossy()
        .into_owned()
}

fn options(callback: CstReceiveFn) -> CstOptions {
    let mut o = std::mem::MaybeUninit::<CstOptions>::uninit();
    // SAFETY: `o` is writable; cst_options_default initialises every field.
    let o = unsafe {
        assert_eq!(cst_options_default(o.as_mut_ptr()), CST_OK);
        o.assume_init()
    };
    CstOptions {
        slot_size: 64,
        slot_count: 8,
        open_timeout_ms: 2000,
        callback,
        ..o
    }
}

/// Side A and side B of a fresh channel.
fn pair(name: &Name, callback: CstReceiveFn) -> (*mut CstTransport, *mut CstTransport) {
    let (mut a, mut b) = (null_mut(), null_mut());
    // SAFETY: valid name, options and out-pointers.
    unsafe {
        assert_eq!(
            cst_create(name.0.as_ptr(), &options(callback), &mut a),
            CST_OK,
            "{}",
            last_error()
        );
        assert_eq!(
            cst_open(name.0.as_ptr(), &options(None), &mut b),
            CST_OK,
            "{}",
            last_error()
        );
    }
    (a, b)
}

#[test]
fn null_handles_and_arguments_are_reported_not_dereferenced() {
    let mut len = 0usize;
    // SAFETY: every pointer is null or valid; the calls must check the nulls.
    unsafe {
        assert_eq!(cst_send(null(), b"x".as_ptr(), 1, 0), CST_NULL_POINTER);
        assert!(last_error().contains("handle"), "{}", last_error());
        assert_eq!(
            cst_recv(null(), null_mut(), 0, &mut len, 0),
            CST_NULL_POINTER
        );
        assert_eq!(cst_close(null_mut()), CST_NULL_POINTER);
        let mut out = null_mut();
        assert_eq!(
            cst_create(null(), &options(None), &mut out),
            CST_NULL_POINTER
        );
        assert!(last_error().contains("name"), "{}", last_error());
        assert_eq!(
            cst_create(c"cst-capi-never".as_ptr(), null(), &mut out),
            CST_NULL_POINTER
        );
        assert!(out.is_null());
    }
}

#[test]
fn out_of_range_enums_are_refused() {
    let name = Name::new("enums");
    let mut out = null_mut();
    let o = CstOptions {
        wait_mode: 7,
        ..options(None)
    };
    // SAFETY: valid pointers.
    assert_eq!(
        unsafe { cst_create(name.0.as_ptr(), &o, &mut out) },
        CST_INVALID_ARGUMENT
    );
    assert!(last_error().contains("wait mode 7"), "{}", last_error());
}

#[test]
fn a_buffer_too_small_keeps_the_message_and_close_twice_is_an_error() {
    let name = Name::new("small");
    let (mut a, mut b) = pair(&name, None);
    let mut small = [0u8; 4];
    let mut big = [0u8; 64];
    let mut len = 0usize;
    // SAFETY: live handles and valid buffers throughout.
    unsafe {
        assert_eq!(cst_send(a, [9u8; 40].as_ptr(), 40, 1_000_000), CST_OK);
        assert_eq!(
            cst_recv(b, small.as_mut_ptr(), 4, &mut len, 1_000_000),
            CST_BUFFER_TOO_SMALL
        );
        assert_eq!(len, 40);
        assert_eq!(cst_recv(b, big.as_mut_ptr(), 64, &mut len, 0), CST_OK);
        assert_eq!((len, big[39]), (40, 9));

        assert_eq!(cst_send(a, b"ab".as_ptr(), 2, 1_000_000), CST_OK);
        let mut data = null();
        assert_eq!(cst_recv_borrow(b, &mut data, &mut len, 1_000_000), CST_OK);
        assert_eq!(std::slice::from_raw_parts(data, len), b"ab");
        assert_eq!(
            cst_recv_borrow(b, &mut data, &mut len, 0),
            CST_BORROW_OUTSTANDING
        );
        assert_eq!(cst_recv_release(b), CST_OK);
        assert_eq!(cst_recv_release(b), CST_INVALID_ARGUMENT);

        let stale = b;
        assert_eq!(cst_close(&mut b), CST_OK);
        assert!(b.is_null());
        assert_eq!(cst_close(&mut b), CST_INVALID_HANDLE);
        let mut stale = stale;
        assert_eq!(cst_close(&mut stale), CST_INVALID_HANDLE);
        assert!(last_error().contains("closed already"), "{}", last_error());
        assert_eq!(cst_close(&mut a), CST_OK);
    }
}

unsafe extern "C" fn fails_on_x(_user: *mut c_void, data: *const u8, len: usize) -> i32 {
    // SAFETY: the library passes a message valid for `len` bytes.
    i32::from(unsafe { std::slice::from_raw_parts(data, len) } == b"x")
}

#[test]
fn a_failing_callback_is_counted_and_the_thread_goes_on() {
    let name = Name::new("callback");
    let (mut a, mut b) = pair(&name, Some(fails_on_x));
    let mut len = 0usize;
    let mut failures = 0u64;
    let mut stats = CstStats::default();
    // SAFETY: live handles and valid out-pointers throughout.
    unsafe {
        assert_eq!(cst_recv(a, null_mut(), 0, &mut len, 0), CST_RECEIVER_IN_USE);
        for msg in [&b"x"[..], b"ok", b"x"] {
            assert_eq!(cst_send(b, msg.as_ptr(), msg.len(), 1_000_000), CST_OK);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            assert_eq!(cst_stats(a, &mut stats), CST_OK);
            if stats.rx.messages_received == 3 || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(stats.rx.messages_received, 3);
        assert_eq!(cst_callback_failures(a, &mut failures), CST_OK);
        assert_eq!(failures, 2);
        assert_eq!(cst_close(&mut b), CST_OK);
        assert_eq!(cst_close(&mut a), CST_OK);
    }
}
