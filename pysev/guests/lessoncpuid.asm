; lessoncpuid.asm - the first lesson of docs/tutorial.md: how a guest finds SEV.
;
; A 4 KiB -bios image that stays in real mode (CPUID and RDMSR work there, at
; CPL 0) and prints, on COM1, the raw registers an SEV-aware guest looks at:
;
;   CPUID 0x80000000: EAX=0x8000001f
;   CPUID 0x8000001f: EAX=0x00000002 EBX=0x00000073 ECX=0x000001fd EDX=0x00000001
;   RDMSR 0xc0010131: EDX=0x00000000 EAX=0x00000001
;
; in the order Linux's sme_enable() and OVMF's reset vector ask: the maximum
; extended leaf first (below 0x8000001F there is no SEV leaf to read), then
; the SEV leaf (EAX bit 1: SEV; EBX[5:0]: the C-bit position; EBX[11:6]: the
; reduced-phys-bits), and SEV_STATUS only when the leaf reports SEV (the MSR
; need not exist otherwise).  Decoding the values is left to the reader.
; Without SEV it prints
;
;   CPUID 0x80000000: EAX=0x8000001e
;   no SEV leaf: SEV is not available
;
; and then it halts (hlt with interrupts off).
;
; Build: nasm -f bin -o lessoncpuid.bin lessoncpuid.asm (tools/build_guests.py)

bits 16
org 0xF000                              ; at reset CS:IP = F000:FFF0, CS base 0xFFFF0000

IMAGE_SIZE      equ 0x1000
COM1            equ 0x3F8
COM1_LSR        equ COM1 + 5
LSR_THRE        equ 0x20
SEV_LEAF        equ 0x8000001F
MSR_SEV_STATUS  equ 0xC0010131

start:
        cli
        mov     ax, 0xF000              ; the image's copy below 1 MiB: DS:SI reaches the strings
        mov     ds, ax
        xor     ax, ax
        mov     ss, ax
        mov     sp, 0x7000

        mov     si, s_max
        call    puts
        mov     eax, 0x80000000
        cpuid
        mov     si, s_eax
        call    puts
        call    puthex
        call    newline
        cmp     eax, SEV_LEAF
        jb      no_leaf

        mov     si, s_leaf
        call    puts
        mov     eax, SEV_LEAF
        xor     ecx, ecx
        cpuid
        push    edx
        push    ecx
        push    ebx
        mov     si, s_eax
        call    puts
        call    puthex
        mov     si, s_ebx
        call    puts
        pop     eax
        call    puthex
        mov     si, s_ecx
        call    puts
        pop     eax
        call    puthex
        mov     si, s_edx
        call    puts
        pop     eax
        call    puthex
        call    newline
        mov     eax, SEV_LEAF           ; ask again for EAX: is the SEV bit (1) set?
        xor     ecx, ecx
        cpuid
        test    eax, 1 << 1
        jz      no_sev

        mov     si, s_msr
        call    puts
        mov     ecx, MSR_SEV_STATUS
        rdmsr
        push    eax
        mov     eax, edx
        mov     si, s_edx
        call    puts
        call    puthex
        pop     eax
        mov     si, s_eax
        call    puts
        call    puthex
        call    newline
        jmp     done

no_leaf:
        mov     si, s_noleaf
        call    puts
        jmp     done
no_sev:
        mov     si, s_nosev
        call    puts
done:
        cli
        hlt
        jmp     done

; putc: send AL to COM1 (waits until the transmitter holding register is empty)
putc:
        push    dx
        push    ax
        mov     dx, COM1_LSR
.wait:  in      al, dx
        test    al, LSR_THRE
        jz      .wait
        pop     ax
        mov     dx, COM1
        out     dx, al
        pop     dx
        ret

; puts: send the zero-terminated string at DS:SI
puts:
        push    si
        push    ax
.next:  lodsb
        test    al, al
        jz      .end
        call    putc
        jmp     .next
.end:   pop     ax
        pop     si
        ret

; puthex: EAX as 0x and eight lower-case hex digits; all registers preserved
puthex:
        push    eax
        push    ecx
        push    edx
        mov     edx, eax
        mov     al, '0'
        call    putc
        mov     al, 'x'
        call    putc
        mov     cx, 8
.digit: rol     edx, 4
        mov     al, dl
        and     al, 0x0F
        add     al, '0'
        cmp     al, '9'
        jbe     .out
        add     al, 'a' - '0' - 10
.out:   call    putc
        loop    .digit
        pop     edx
        pop     ecx
        pop     eax
        ret

newline:
        push    ax
        mov     al, 10
        call    putc
        pop     ax
        ret

s_max:    db "CPUID 0x80000000:", 0
s_leaf:   db "CPUID 0x8000001f:", 0
s_msr:    db "RDMSR 0xc0010131:", 0
s_eax:    db " EAX=", 0
s_ebx:    db " EBX=", 0
s_ecx:    db " ECX=", 0
s_edx:    db " EDX=", 0
s_noleaf: db "no SEV leaf: SEV is not available", 10, 0
s_nosev:  db "the SEV bit is clear: SEV is not active", 10, 0

        times   IMAGE_SIZE - 0x10 - ($ - $$) db 0
reset:  jmp     start                   ; the reset vector, 0xFFFFFFF0
        times   IMAGE_SIZE - ($ - $$) db 0
