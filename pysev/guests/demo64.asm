; demo64.asm - the guest that `pysev demo` runs.
;
; A flat 64-bit binary loaded at 0x100000.  The host maps 1 MiB at 0x100000
; (code, data and stack), points RSP at the top of it (0x200000), attaches a
; 16550 UART at 0x3F8 and starts execution at the first byte.
;
; The guest prints through the UART, polling the line status register
; (port 0x3FD, bit 5 = transmit holding register empty) before each byte:
;
;   pysev demo guest: hello from 64-bit mode
;   primes: 2 3 5 7 11 13 17 19 23 29
;   fnv1a32("pysev: AMD SEV in pure Python") = 0x........
;   fib(90) = 2880067194370816120
;   pysev demo guest: done
;
; and halts.  Build: nasm -f bin -o demo64.bin demo64.asm (tools/build_guests.py)

bits 64
org 0x100000

COM1        equ 0x3F8
COM1_LSR    equ COM1 + 5
LSR_THRE    equ 0x20

NPRIMES     equ 10
FIB_N       equ 90
FNV_OFFSET  equ 0x811C9DC5
FNV_PRIME   equ 0x01000193

start:
        lea     rsi, [rel msg_hello]
        call    puts

; ---- the first NPRIMES primes, by trial division ---------------------------
        lea     rsi, [rel msg_primes]
        call    puts
        mov     ebx, 2                  ; candidate
        xor     r12d, r12d              ; primes found so far
.candidate:
        mov     ecx, 2                  ; trial divisor
.trial:
        mov     eax, ecx
        mul     ecx                     ; edx:eax = divisor squared
        cmp     eax, ebx
        ja      .prime                  ; divisor^2 > candidate: no factor left
        mov     eax, ebx
        xor     edx, edx
        div     ecx
        test    edx, edx
        jz      .composite
        inc     ecx
        jmp     .trial
.prime:
        test    r12d, r12d
        jz      .first
        mov     al, ' '
        call    putc
.first:
        mov     eax, ebx
        call    print_dec
        inc     r12d
.composite:
        inc     ebx
        cmp     r12d, NPRIMES
        jb      .candidate
        call    newline

; ---- 32-bit FNV-1a hash of a string ------------------------------------------
        lea     rsi, [rel msg_fnv]
        call    puts
        lea     rsi, [rel fnv_text]
        call    puts
        lea     rsi, [rel msg_fnv_eq]
        call    puts
        lea     rsi, [rel fnv_text]
        mov     eax, FNV_OFFSET
.fnv_byte:
        movzx   edx, byte [rsi]
        test    edx, edx
        jz      .fnv_done
        xor     eax, edx
        imul    eax, eax, FNV_PRIME
        inc     rsi
        jmp     .fnv_byte
.fnv_done:
        call    print_hex32
        call    newline

; ---- fib(FIB_N) with 64-bit arithmetic -----------------------------------
        lea     rsi, [rel msg_fib]
        call    puts
        xor     eax, eax                ; fib(i)
        mov     edx, 1                  ; fib(i + 1)
        mov     ecx, FIB_N
.fib_step:
        mov     r8, rax
        add     r8, rdx
        mov     rax, rdx
        mov     rdx, r8
        dec     ecx
        jnz     .fib_step               ; now rax = fib(FIB_N)
        call    print_dec
        call    newline

        lea     rsi, [rel msg_done]
        call    puts
        hlt

; ---- output routines (all registers preserved) ------------------------------

; putc: send the byte in al to COM1
putc:
        push    rdx
        push    rax
        mov     dx, COM1_LSR
.wait:
        in      al, dx
        test    al, LSR_THRE
        jz      .wait
        pop     rax
        mov     dx, COM1
        out     dx, al
        pop     rdx
        ret

; puts: send the zero-terminated string at rsi
puts:
        push    rsi
        push    rax
.next:
        mov     al, [rsi]
        test    al, al
        jz      .end
        call    putc
        inc     rsi
        jmp     .next
.end:
        pop     rax
        pop     rsi
        ret

newline:
        push    rax
        mov     al, 10
        call    putc
        pop     rax
        ret

; print_dec: rax as an unsigned decimal number
print_dec:
        push    rax
        push    rcx
        push    rdx
        push    rsi
        sub     rsp, 32                 ; digit buffer
        lea     rsi, [rsp + 31]
        mov     byte [rsi], 0
        mov     ecx, 10
.digit:
        xor     edx, edx
        div     rcx
        add     dl, '0'
        dec     rsi
        mov     [rsi], dl
        test    rax, rax
        jnz     .digit
        call    puts
        add     rsp, 32
        pop     rsi
        pop     rdx
        pop     rcx
        pop     rax
        ret

; print_hex32: eax as 0x followed by 8 lower case hex digits
print_hex32:
        push    rax
        push    rbx
        push    rcx
        push    rdx
        push    rdi
        mov     ebx, eax
        mov     al, '0'
        call    putc
        mov     al, 'x'
        call    putc
        lea     rdi, [rel hex_digits]
        mov     ecx, 8
.nibble:
        rol     ebx, 4
        mov     edx, ebx
        and     edx, 0x0F
        mov     al, [rdi + rdx]
        call    putc
        dec     ecx
        jnz     .nibble
        pop     rdi
        pop     rdx
        pop     rcx
        pop     rbx
        pop     rax
        ret

; ---- data -----------------------------------------------------------------
msg_hello:  db "pysev demo guest: hello from 64-bit mode", 10, 0
msg_primes: db "primes: ", 0
msg_fnv:    db 'fnv1a32("', 0
fnv_text:   db "pysev: AMD SEV in pure Python", 0
msg_fnv_eq: db '") = ', 0
msg_fib:    db "fib(90) = ", 0     ; keep in step with FIB_N
msg_done:   db "pysev demo guest: done", 10, 0
hex_digits: db "0123456789abcdef"
