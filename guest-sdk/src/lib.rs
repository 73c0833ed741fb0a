//! Write a Switchyard routing strategy in a few lines of Rust.
//!
//! A strategy is a type implementing [`Strategy`]; one macro line turns it into
//! a WebAssembly module speaking ABI v1 (`docs/abi.md`):
//!
//! ```
//! use switchyard_guest::{Input, Strategy};
//!
//! #[derive(Default)]
//! pub struct FirstHealthy;
//!
//! impl Strategy for FirstHealthy {
//!     fn decide(&mut self, input: &Input<'_>) -> Option<usize> {
//!         (0..input.candidates().len()).find(|&i| input.eligible(i))
//!     }
//! }
//!
//! switchyard_guest::export_strategy!(FirstHealthy);
//! ```
//!
//! Build it with `cargo build --target wasm32-unknown-unknown --release` as a
//! `cdylib`. The same source compiles natively, where the macro exports nothing
//! and tests call [`Strategy::decide`] on inputs made with [`encode`].
//!
//! The crate is `no_std` and needs no allocator: the input buffer is taken
//! straight from `memory.grow`, and views read it in place.
#![no_std]
#![deny(missing_docs)]

pub mod layout;
mod view;

/// The host-side writer of the layout, shared with native tests.
pub mod encode;

pub use encode::{CandidateStats, Meta, RequestHead};
pub use layout::{
    ABI_VERSION, FLAG_DRAINING, FLAG_HEADERS_NAMED, FLAG_HEALTHY, READS_ALL, READS_CANDIDATES,
    READS_HEADERS, READS_REQUEST, READS_SEQUENCE, READS_TARGET, READS_TLS, usable,
};
pub use view::{Candidate, Candidates, Input, InputError, Protocol, Request};

/// A routing strategy. The exported module builds it with `Default::default()`
/// and then calls [`Strategy::configure`] once with the configuration bytes.
pub trait Strategy: Default {
    /// Applies the strategy's configuration (empty when none was given). An
    /// `Err(code)` makes the host reject the module, naming `code`.
    ///
    /// The default takes no configuration: a non-empty one is rejected, so
    /// a configuration given by mistake is not silently ignored.
    fn configure(&mut self, config: &[u8]) -> Result<(), i32> {
        if config.is_empty() {
            Ok(())
        } else {
            Err(reject(1, "this strategy takes no configuration"))
        }
    }

    /// Chooses a candidate index for this request, or `None` for "no opinion"
    /// (the host then falls back to its native decision).
    fn decide(&mut self, input: &Input<'_>) -> Option<usize>;

    /// The parts of the input [`Strategy::decide`] reads (`READS_*` bits),
    /// asked once after [`Strategy::configure`]. The host encodes only
    /// those, so a strategy that reads only the candidates does not pay for
    /// the request's headers; the rest reads as empty. The host checks the
    /// answer when it loads the module. Default: everything.
    fn reads(&self) -> u32 {
        READS_ALL
    }

    /// The request headers [`Strategy::decide`] reads, as a comma-separated
    /// list of names (`b"x-user-id"`, `b"cookie,x-tenant"`), asked once
    /// after [`Strategy::configure`]. When the strategy reads headers
    /// ([`READS_HEADERS`]), the host then writes only the headers with these
    /// names, so a lookup scans one or two entries instead of every header
    /// a browser sends, and the host copies a few bytes instead of the whole
    /// head. The host checks this too when it loads the module. Default
    /// `None`: every header.
    fn headers(&self) -> Option<&[u8]> {
        None
    }
}

/// Small hashing helpers strategies commonly need.
pub mod hash {
    /// FNV-1a over bytes, finished with a 64-bit mix so that short keys spread.
    pub fn hash_bytes(bytes: &[u8]) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in bytes {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        mix64(h)
    }

    /// A strong 64-bit finalizer (splitmix64).
    #[inline]
    pub fn mix64(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Runtime support for the exported functions. Public for the macro only.
#[doc(hidden)]
pub mod rt {
    use core::cell::UnsafeCell;

    /// A cell for module-global state. Sound because a core WebAssembly
    /// instance runs one call at a time and the host never re-enters it.
    pub struct GuestCell<T>(UnsafeCell<T>);

    // SAFETY: see the type's doc: no two threads ever touch one instance.
    unsafe impl<T> Sync for GuestCell<T> {}

    impl<T> GuestCell<T> {
        /// A new cell.
        pub const fn new(v: T) -> Self {
            GuestCell(UnsafeCell::new(v))
        }
        /// Exclusive access.
        ///
        /// # Safety
        /// The caller must not hold another reference from this cell.
        #[allow(clippy::mut_from_ref)]
        pub unsafe fn get(&self) -> &mut T {
            // SAFETY: the caller guarantees exclusivity.
            unsafe { &mut *self.0.get() }
        }
    }

    /// Where the input buffer lives and how big it is.
    static BUFFER: GuestCell<(usize, usize)> = GuestCell::new((0, 0));

    /// `switchyard_input`: a buffer of at least `capacity` bytes, stable until
    /// a larger one is asked for. Returns 0 if memory cannot grow.
    pub fn input(capacity: i32) -> i32 {
        // SAFETY: single-threaded instance, no other borrow is alive.
        let buf = unsafe { BUFFER.get() };
        let want = capacity.max(0) as usize;
        if want <= buf.1 && buf.0 != 0 {
            return buf.0 as i32;
        }
        match grow(want.max(1)) {
            Some(ptr) => {
                *buf = (ptr, want.max(1).next_multiple_of(65536));
                ptr as i32
            }
            None => 0,
        }
    }

    #[cfg(target_arch = "wasm32")]
    fn grow(bytes: usize) -> Option<usize> {
        let pages = bytes.div_ceil(65536);
        let old = core::arch::wasm32::memory_grow(0, pages);
        (old != usize::MAX).then_some(old * 65536)
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn grow(_bytes: usize) -> Option<usize> {
        None
    }

    /// Where the macro's `switchyard_headers` list lives: the names and a NUL.
    static HEADER_NAMES: GuestCell<[u8; crate::layout::HEADER_NAMES_MAX_LEN + 1]> =
        GuestCell::new([0; crate::layout::HEADER_NAMES_MAX_LEN + 1]);

    /// `switchyard_headers`: the address of `names` with a NUL after it, or
    /// 0 (every header) for `None` or a list too long to hold.
    pub fn header_names(names: Option<&[u8]>) -> i32 {
        let Some(names) = names else { return 0 };
        if names.len() > crate::layout::HEADER_NAMES_MAX_LEN {
            crate::log(
                1,
                b"Strategy::headers is longer than 1024 bytes: every header is written instead",
            );
            return 0;
        }
        // SAFETY: single-threaded instance, no other borrow is alive.
        let buf = unsafe { HEADER_NAMES.get() };
        buf[..names.len()].copy_from_slice(names);
        buf[names.len()] = 0;
        buf.as_ptr() as usize as i32
    }

    /// The input the host wrote, `len` bytes.
    pub fn input_slice(len: i32) -> &'static [u8] {
        // SAFETY: single-threaded instance; the region was obtained from
        // memory.grow by `input` and the host wrote at most its capacity.
        let (ptr, cap) = unsafe { *BUFFER.get() };
        let len = (len.max(0) as usize).min(cap);
        if ptr == 0 {
            return &[];
        }
        // SAFETY: [ptr, ptr + cap) is memory this module grew and owns.
        unsafe { core::slice::from_raw_parts(ptr as *const u8, len) }
    }

    /// Runs `decide` for the macro: decodes, calls, maps the answer to i32.
    pub fn decide<S: super::Strategy>(state: &mut S, len: i32) -> i32 {
        match super::Input::parse(input_slice(len)) {
            Ok(input) => match state.decide(&input) {
                Some(i) if i <= i32::MAX as usize => i as i32,
                _ => -1,
            },
            Err(_) => -2,
        }
    }

    #[cfg(all(target_arch = "wasm32", feature = "panic-handler"))]
    #[panic_handler]
    fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
        core::arch::wasm32::unreachable()
    }
}

/// Writes a line to the host's log (`switchyard.log`): level 0 error, 1 warn,
/// 2 info, 3 debug. The host keeps at most 20 lines a second per strategy.
/// Natively (tests) it does nothing.
pub fn log(level: i32, line: &[u8]) {
    #[cfg(target_arch = "wasm32")]
    {
        #[link(wasm_import_module = "switchyard")]
        unsafe extern "C" {
            #[link_name = "log"]
            fn host_log(level: i32, ptr: i32, len: i32);
        }
        // SAFETY: the host reads `len` bytes at `ptr` from this instance's
        // memory during the call and keeps no reference.
        unsafe { host_log(level, line.as_ptr() as i32, line.len() as i32) }
    }
    #[cfg(not(target_arch = "wasm32"))]
    let _ = (level, line);
}

/// For [`Strategy::configure`]: logs why the configuration is refused, which
/// the host shows beside `code` (`switchyard_init rejected the configuration
/// with code 3: unknown key ...`), and returns `code` for the `Err`.
pub fn reject(code: i32, why: &str) -> i32 {
    log(0, why.as_bytes());
    code
}

/// Exports a [`Strategy`] as the ABI v1 functions. On non-wasm targets it
/// expands to nothing, so the same crate also builds natively for tests.
///
/// What the strategy reads comes from [`Strategy::reads`], or from the macro
/// line itself: `export_strategy!(MyStrategy, reads = READS_CANDIDATES);`.
#[macro_export]
macro_rules! export_strategy {
    ($ty:ty) => {
        $crate::export_strategy!(@with $ty, |s: &$ty| $crate::Strategy::reads(s));
    };
    ($ty:ty, reads = $reads:expr) => {
        $crate::export_strategy!(@with $ty, |_: &$ty| -> u32 {
            #[allow(unused_imports)]
            use $crate::layout::*;
            $reads
        });
    };
    (@with $ty:ty, $reads:expr) => {
        #[cfg(target_arch = "wasm32")]
        #[doc(hidden)]
        pub mod __switchyard_exports {
            #[allow(unused_imports)]
            use super::*;
            use $crate::rt::GuestCell;
            static STATE: GuestCell<Option<$ty>> = GuestCell::new(None);

            #[unsafe(no_mangle)]
            pub extern "C" fn switchyard_abi_version() -> i32 {
                $crate::ABI_VERSION as i32
            }

            #[unsafe(no_mangle)]
            pub extern "C" fn switchyard_input(capacity: i32) -> i32 {
                $crate::rt::input(capacity)
            }

            #[unsafe(no_mangle)]
            pub extern "C" fn switchyard_init(len: i32) -> i32 {
                let config = $crate::rt::input_slice(len);
                let mut s = <$ty as ::core::default::Default>::default();
                match $crate::Strategy::configure(&mut s, config) {
                    Ok(()) => {
                        // SAFETY: single-threaded instance, no borrow alive.
                        unsafe { *STATE.get() = Some(s) };
                        0
                    }
                    Err(code) => {
                        if code == 0 {
                            1
                        } else {
                            code
                        }
                    }
                }
            }

            #[unsafe(no_mangle)]
            pub extern "C" fn switchyard_decide(len: i32) -> i32 {
                // SAFETY: single-threaded instance, no borrow alive.
                let state = unsafe { STATE.get() };
                let s = state.get_or_insert_with(<$ty as ::core::default::Default>::default);
                $crate::rt::decide(s, len)
            }

            #[unsafe(no_mangle)]
            pub extern "C" fn switchyard_reads() -> i32 {
                // SAFETY: single-threaded instance, no borrow alive.
                let state = unsafe { STATE.get() };
                let s = state.get_or_insert_with(<$ty as ::core::default::Default>::default);
                let reads = $reads;
                reads(s) as i32
            }

            #[unsafe(no_mangle)]
            pub extern "C" fn switchyard_headers() -> i32 {
                // SAFETY: single-threaded instance, no borrow alive.
                let state = unsafe { STATE.get() };
                let s = state.get_or_insert_with(<$ty as ::core::default::Default>::default);
                $crate::rt::header_names($crate::Strategy::headers(s))
            }
        }
    };
}
