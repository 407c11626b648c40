; alu.asm - integer ALU throughput.
;
; In:  rcx = iterations (>= 1), set by the host before start.
; Body: exactly 8 instructions per iteration (add, xor, shl, imul, shr, cmp,
; dec, jnz) on registers only.
;
; Instructions executed from the entry point up to (not including) the final
; hlt, which is the last byte of the binary:
;
;     insns(n) = 8 * n + 2
;
; Loaded at 0x100000 in 64-bit mode; the entry point is the first byte.

bits 64
org 0x100000

start:
        mov     r9, 0x9E3779B97F4A7C15  ; 1: odd multiplier
        mov     edx, 0x12345            ; 2
.loop:
        add     rax, rcx                ; 1  the counter feeds the state
        xor     rdx, rax                ; 2
        shl     rdx, 3                  ; 3
        imul    rax, r9                 ; 4  odd multiplier: no information lost
        shr     rdx, 1                  ; 5
        cmp     rax, rdx                ; 6
        dec     rcx                     ; 7
        jnz     .loop                   ; 8
        hlt
