//! Asking the CPU for memory a lookup will soon need: a replay decodes packets a few ahead and
//! has their flows' table slots fetched meanwhile, so it does not wait for each miss in turn.

/// Starts fetching the cache lines `value` lies in.
#[inline]
pub fn lines<T>(value: &T) {
    let start = (value as *const T).cast::<u8>();
    let size = std::mem::size_of::<T>().max(1);
    let mut offset = 0;
    while offset < size {
        fetch(start.wrapping_add(offset));
        // On to the start of the next line.
        offset += LINE - (start as usize + offset) % LINE;
    }
}

/// Starts fetching the cache line `value` starts in.
#[inline]
pub fn line<T>(value: &T) {
    fetch((value as *const T).cast());
}

const LINE: usize = 64;

#[inline]
fn fetch(address: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint: it never faults, whatever the address, and changes
    // nothing the program can see.
    unsafe {
        std::arch::x86_64::_mm_prefetch(address.cast(), std::arch::x86_64::_MM_HINT_T0)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}
