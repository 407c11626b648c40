; call.asm - call/return and stack throughput.
;
; In:  rcx = iterations (>= 1), rsp = a valid stack, set by the host before start.
; Body: 9 instructions per iteration: the loop (call, dec, jnz) calls a
; function of 6 instructions (push, mov, imul, add, pop, ret).
;
; Instructions executed from the entry point up to (not including) the final
; hlt, which is the last byte of the binary:
;
;     insns(n) = 9 * n + 3
;
; Loaded at 0x100000 in 64-bit mode; the entry point is the first byte.

bits 64
org 0x100000

start:
        xor     eax, eax                ; 1: accumulator
        mov     ebx, 0x1234             ; 2: callee-saved, must survive
        jmp     main                    ; 3

; rax += rcx * rcx
square_add:
        push    rbx                     ; 1
        mov     rbx, rcx                ; 2
        imul    rbx, rbx                ; 3
        add     rax, rbx                ; 4
        pop     rbx                     ; 5
        ret                             ; 6

main:
.loop:
        call    square_add              ; 1
        dec     rcx                     ; 2
        jnz     .loop                   ; 3
        hlt
