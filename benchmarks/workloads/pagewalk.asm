; pagewalk.asm - page-walk throughput under 4-level paging with 4 KiB pages.
;
; Runs in 64-bit long mode with paging on; the host builds the page tables
; (benchmarks/run.py, PagingWorkload) and, for the SEV run, sets the C-bit in
; CR3 and in every paging-structure entry.  The binary is the same for both.
;
; In:  rcx = iterations (>= 1), rsi = linear address of the data region,
;      r8 = PAGES, the number of 4 KiB pages in it (>= 1), each mapped by its
;      own PTE; all set by the host before start.
; Body: each iteration sweeps the data region, xoring rcx into the first
; qword of every page, then writes CR3 back with its own value.  That CR3
; write drops every TLB entry (no page is global), so every page of the next
; sweep is a TLB miss again and costs a fresh 4-level walk (pysev keeps
; separate read and write TLBs, so a read-modify-write misses in both), as
; does the first fetch of each code block.
;
; Instructions executed from the entry point up to (not including) the final
; hlt, which is the last byte of the binary (4 per page, 6 per sweep):
;
;     insns(n) = (4 * PAGES + 6) * n + 0      (PAGES = 256: 1030 * n + 0)
;
; Loaded at 0x100000 (identity mapped); the entry point is the first byte.

bits 64
org 0x100000

start:
.sweep:
        mov     rdi, rsi                ; 1
        mov     edx, r8d                ; 2  pages left in this sweep
.page:
        xor     [rdi], rcx              ; 1  read and write: a miss in both TLBs
        add     rdi, 4096               ; 2  next page
        dec     edx                     ; 3
        jnz     .page                   ; 4
        mov     rax, cr3                ; 3
        mov     cr3, rax                ; 4  flush the TLB
        dec     rcx                     ; 5
        jnz     .sweep                  ; 6
        hlt
