// Package startuppages gives back the resident pages of the program's own
// code and read-only data that only its start-up used.
//
// A Go binary linking client-go and controller-runtime runs the init
// functions of every Kubernetes API group and registers thousands of types
// before main: that touches 25-30 MiB of the executable's text and
// read-only data, and the kernel maps 64 KiB around every page touched
// (fault-around). Those pages stay in the process's resident set for ever,
// although the speaker never runs that code again: most of a speaker's
// resident memory with few Services. Dropping the process's mappings of
// them (madvise MADV_DONTNEED on the executable's read-only, private
// mappings) takes them out of its resident set; the pages the program
// still runs are faulted back in from the page cache at the next touch (a
// minor fault, no disk read while the page is cached), so what stays
// resident is the code and data the program really uses. Writable
// mappings are never touched: their contents would be lost. Nor is any
// read-only mapping that was ever written: the RELRO segment of a PIE or
// externally linked binary, which the dynamic loader relocates and then
// makes read-only (see ReleasableRegions).
//
// The file pages are shared, reclaimable page cache, so releasing them
// lowers VmRSS but not anonymous memory (RssAnon) or the peak (VmHWM),
// which is what barelb's memory targets count: the speaker does it only
// with --release-startup-pages. Run also returns the heap's free pages
// (Options.FreeHeap), which does lower anonymous memory.
package startuppages
