; mem.asm - memory load/modify/store throughput over a 64 KiB buffer.
;
; In:  rcx = iterations (>= 1), rsi = buffer address (64 KiB, 8-byte aligned),
;      set by the host before start.
; Body: 10 instructions per iteration: a byte load, modify and store and a
; qword load, modify and store at the same offset, then the offset steps by 40
; and wraps at 64 KiB (8-byte aligned offsets, so every qword stays inside the
; buffer; 40 is coprime with the 8192 slots, so all of them are visited).
;
; Instructions executed from the entry point up to (not including) the final
; hlt, which is the last byte of the binary:
;
;     insns(n) = 10 * n + 2
;
; Loaded at 0x100000 in 64-bit mode; the entry point is the first byte.

bits 64
org 0x100000

start:
        xor     edx, edx                ; 1: offset into the buffer
        mov     r8, 0x9E3779B97F4A7C15  ; 2
.loop:
        movzx   eax, byte [rsi + rdx]   ; 1  byte load
        add     al, cl                  ; 2  modify
        mov     [rsi + rdx], al         ; 3  byte store
        mov     rax, [rsi + rdx]        ; 4  qword load
        xor     rax, r8                 ; 5  modify
        mov     [rsi + rdx], rax        ; 6  qword store
        add     edx, 40                 ; 7
        and     edx, 0xFFF8             ; 8  wrap at 64 KiB
        dec     rcx                     ; 9
        jnz     .loop                   ; 10
        hlt
