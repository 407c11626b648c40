; sevguest.asm - a tiny SEV-aware firmware image for pysev's tests.
;
; A 64 KiB -bios image: the reset vector is at its end (0xFFFFFFF0), and it
; goes real mode -> 32-bit protected mode -> 64-bit long mode, printing its
; progress on COM1 (0x3F8, polling LSR bit 5 before each byte).  Run it with
;
;   pysev run -bios sevguest.bin -object sev-emulated,id=sev0,tik=F,tek=F \
;             -machine q35,memory-encryption=sev0
;
; What it does, in the order of a real SEV boot:
;
; 1. SEV detection as Linux's sme_enable() does it: CPUID 0x80000000 must
;    report a maximum extended leaf >= 0x8000001F; CPUID 0x8000001F EAX bit 1
;    (SEV); RDMSR 0xC0010131 (SEV_STATUS) bit 0; the C-bit position is
;    EBX[5:0] and the reduced-phys-bits EBX[11:6].  A C-bit below 32 is
;    refused, as OVMF does (the tables below put it in the upper dword).
; 2. "Firmware" page tables, built while paging is off (under SEV every access
;    without paging is private, so the tables are written encrypted): an
;    identity map of 4 GiB with 2 MiB pages, the C-bit in every entry, CR3
;    without it (CR3 is 32 bits wide outside long mode).  Long mode is
;    entered on these, as OVMF's reset vector does.
; 3. "Kernel" page tables, built in long mode through the firmware mapping
;    (private writes, since its leaves carry the C-bit): the same identity
;    map with the C-bit at every level (PML4E, PDPTE, PDE), loaded into CR3
;    with the C-bit set, after the check Linux's sev_verify_cbit() makes: a
;    RDRAND value (retried until CF=1) is written through the old mapping,
;    CR3 switches to the new tables, and the value read back must match.
;    The new tables are kept.
; 4. The launch secret: by this guest's convention the host injects a table
;    in the efi_secret format at guest-physical address 0x800000
;    (sev-inject-launch-secret with gpa=0x800000):
;        header  GUID 1e74f542-71dd-4d66-963e-ef4287ff173b (little-endian
;                byte order), u32 total length (header included)
;        entries GUID (16 bytes), u32 length (this 20-byte entry header
;                included), data
;    The data of the first entry is printed as text (up to a NUL byte or
;    MAX_SECRET bytes); without the header GUID it says so.
;
; Serial output with SEV (C-bit 51, one reduced bit, a secret "hello"):
;
;   sevguest: protected mode
;   SEV: active, C-bit 51, reduced-phys-bits 1
;   sevguest: long mode
;   C-bit page tables verified
;   secret: hello
;   sevguest: halt
;
; and without SEV (the same path, with no C-bit anywhere and no check):
;
;   sevguest: protected mode
;   SEV not active
;   sevguest: long mode
;   page tables without C-bit loaded
;   no secret injected
;   sevguest: halt
;
; then it halts (hlt with interrupts off).  A failed check prints
; "C-bit page tables: verification FAILED" and halts there.
;
; Build: nasm -f bin -o sevguest.bin sevguest.asm (tools/build_guests.py)

bits 16
org 0xFFFF0000                          ; the image ends at 4 GiB

IMAGE_SIZE      equ 0x10000
IMAGE_BASE      equ 0xFFFF0000

COM1            equ 0x3F8
COM1_LSR        equ COM1 + 5
LSR_THRE        equ 0x20

; guest RAM used (all well inside the default 128 MiB)
VARS            equ 0x7000              ; variables, below
STACK_TOP       equ 0x9000
BOOT_PT         equ 0x10000             ; firmware tables: 6 pages
KERNEL_PT       equ 0x20000             ; kernel tables: 6 pages
CHECK_ADDR      equ 0x30000             ; the sev_verify_cbit scratch quadword
SECRET_GPA      equ 0x800000            ; where the host injects the secret table
MAX_SECRET      equ 200                 ; most secret bytes printed

; variables at VARS
SEV_ACTIVE      equ VARS + 0            ; byte: 1 when SEV is active
CBITPOS         equ VARS + 1            ; byte
REDUCED_BITS    equ VARS + 2            ; byte
ENC_MASK_HI     equ VARS + 4            ; dword: the C-bit mask >> 32 (0 without SEV)

MSR_EFER        equ 0xC0000080
MSR_SEV_STATUS  equ 0xC0010131

PTE_P           equ 0x01
PTE_RW          equ 0x02
PTE_PS          equ 0x80                ; 2 MiB page in a PDE

SEL_CODE32      equ 0x08
SEL_DATA        equ 0x10
SEL_CODE64      equ 0x18

; ---- serial output routines, instantiated for 32- and 64-bit code --------------
;
; %1: label suffix, %2..%4: the accumulator, source index and data register
; names of that mode.  All registers are preserved.

%macro SERIAL_ROUTINES 4
; putc: send al to COM1
putc%1:
        push    %4
        push    %2
        mov     dx, COM1_LSR
%%wait: in      al, dx
        test    al, LSR_THRE
        jz      %%wait
        pop     %2
        mov     dx, COM1
        out     dx, al
        pop     %4
        ret

; puts: send the zero-terminated string at the source index
puts%1:
        push    %3
        push    %2
%%next: lodsb
        test    al, al
        jz      %%end
        call    putc%1
        jmp     %%next
%%end:  pop     %2
        pop     %3
        ret

; putdec: al (0 to 255) in decimal
putdec%1:
        push    %2
        push    %4
        movzx   eax, al
        mov     dl, 100
        div     dl                      ; al = hundreds, ah = the rest
        test    al, al
        jz      %%tens
        add     al, '0'
        call    putc%1
        mov     al, ah
        movzx   eax, al
        mov     dl, 10
        div     dl
        jmp     %%tdigit
%%tens: mov     al, ah
        movzx   eax, al
        mov     dl, 10
        div     dl                      ; al = tens, ah = ones
        test    al, al
        jz      %%ones
%%tdigit:
        add     al, '0'
        call    putc%1
%%ones: mov     al, ah
        add     al, '0'
        call    putc%1
        pop     %4
        pop     %2
        ret
%endmacro

; ---- 32-bit protected mode, paging off ----------------------------------------

bits 32
start32:
        mov     ax, SEL_DATA
        mov     ds, ax
        mov     es, ax
        mov     ss, ax
        mov     fs, ax
        mov     gs, ax
        mov     esp, STACK_TOP
        mov     esi, msg_pmode
        call    puts32

        ; -- SEV detection (sme_enable) --
        mov     dword [VARS], 0
        mov     dword [ENC_MASK_HI], 0
        mov     eax, 0x80000000
        cpuid
        cmp     eax, 0x8000001F
        jb      .no_sev                 ; no memory encryption leaf
        mov     eax, 0x8000001F
        cpuid
        bt      eax, 1                  ; SEV supported
        jnc     .no_sev
        mov     edi, ebx                ; C-bit and reduced-phys-bits, kept for below
        mov     ecx, MSR_SEV_STATUS
        rdmsr
        bt      eax, 0                  ; SEV enabled for this guest
        jnc     .no_sev

        mov     eax, edi
        and     eax, 0x3F
        mov     [CBITPOS], al
        mov     eax, edi
        shr     eax, 6
        and     eax, 0x3F
        mov     [REDUCED_BITS], al
        mov     byte [SEV_ACTIVE], 1
        mov     esi, msg_sev_active
        call    puts32
        mov     al, [CBITPOS]
        call    putdec32
        mov     esi, msg_reduced
        call    puts32
        mov     al, [REDUCED_BITS]
        call    putdec32
        mov     al, 10
        call    putc32
        movzx   ecx, byte [CBITPOS]
        sub     ecx, 32
        jb      .cbit_low               ; the tables keep the C-bit in the upper dword
        xor     eax, eax
        bts     eax, ecx
        mov     [ENC_MASK_HI], eax
        jmp     .tables
.cbit_low:
        mov     esi, msg_cbit_low
        call    puts32
        jmp     halt32
.no_sev:
        mov     esi, msg_no_sev
        call    puts32

        ; -- firmware page tables (paging is off: written privately under SEV) --
.tables:
        mov     edi, BOOT_PT
        mov     edx, [ENC_MASK_HI]
        call    build_tables32

        ; -- long mode on them: PAE, CR3 (no C-bit: 32-bit mov), EFER.LME, PG --
        mov     eax, cr4
        or      eax, 1 << 5             ; PAE
        mov     cr4, eax
        mov     eax, BOOT_PT
        mov     cr3, eax
        mov     ecx, MSR_EFER
        rdmsr
        or      eax, 1 << 8             ; LME
        wrmsr
        mov     eax, cr0
        or      eax, 1 << 31            ; PG: long mode is active
        mov     cr0, eax
        jmp     SEL_CODE64:start64

; build_tables32: 4-level identity map of the low 4 GiB at edi (6 pages) with
; 2 MiB pages; edx is written as the upper dword of every entry (the C-bit).
; The PML4 is at edi, the PDPT at edi + 0x1000, the four PDs after it.
build_tables32:
        pushad
        push    edi
        mov     ecx, 6 * 0x1000 / 4
        xor     eax, eax
        rep     stosd                   ; clear the six pages
        pop     edi
        lea     eax, [edi + 0x1000 + PTE_P + PTE_RW]
        mov     [edi], eax              ; PML4E 0 -> PDPT
        mov     [edi + 4], edx
        lea     ebx, [edi + 0x1000]     ; PDPTEs 0..3 -> PDs
        lea     eax, [edi + 0x2000 + PTE_P + PTE_RW]
        xor     ecx, ecx
.pdpte: mov     [ebx + ecx * 8], eax
        mov     [ebx + ecx * 8 + 4], edx
        add     eax, 0x1000
        inc     ecx
        cmp     ecx, 4
        jb      .pdpte
        lea     ebx, [edi + 0x2000]     ; 2048 PDEs: 2 MiB pages
        mov     eax, PTE_P + PTE_RW + PTE_PS
        xor     ecx, ecx
.pde:   mov     [ebx + ecx * 8], eax
        mov     [ebx + ecx * 8 + 4], edx
        add     eax, 0x200000
        inc     ecx
        cmp     ecx, 2048
        jb      .pde
        popad
        ret

halt32:
        cli
        hlt
        jmp     halt32

SERIAL_ROUTINES 32, eax, esi, edx

; ---- 64-bit long mode -----------------------------------------------------------

bits 64
start64:
        mov     ax, SEL_DATA
        mov     ds, ax
        mov     es, ax
        mov     ss, ax
        mov     rsp, STACK_TOP
        lea     rsi, [rel msg_lmode]
        call    puts64

        ; -- kernel page tables with the C-bit at every level, built through the
        ;    firmware mapping (whose leaves carry the C-bit: private writes) --
        mov     edx, [ENC_MASK_HI]
        shl     rdx, 32                 ; the C-bit mask (0 without SEV)
        mov     rbx, rdx
        mov     edi, KERNEL_PT
        call    build_tables64
        lea     rcx, [rbx + KERNEL_PT]  ; new CR3, with the C-bit
        cmp     byte [SEV_ACTIVE], 0
        je      .plain

        ; -- sev_verify_cbit: a random value written through the old mapping
        ;    must read back the same through the new one --
.rdrand:
        rdrand  rdx
        jnc     .rdrand                 ; no entropy yet: retry
        mov     [CHECK_ADDR], rdx       ; through the firmware tables
        mov     cr3, rcx                ; the new tables, C-bit in CR3
        mov     rax, [CHECK_ADDR]       ; through the new tables
        cmp     rax, rdx
        jne     .bad
        lea     rsi, [rel msg_verified]
        call    puts64
        jmp     secret64
.bad:
        lea     rsi, [rel msg_verify_failed]
        call    puts64
        jmp     halt64
.plain:
        mov     cr3, rcx
        lea     rsi, [rel msg_plain]
        call    puts64

; -- the launch secret table at SECRET_GPA --
secret64:
        mov     ebx, SECRET_GPA
        mov     rax, [rbx]              ; header GUID
        cmp     rax, [rel secret_guid]
        jne     .none
        mov     rax, [rbx + 8]
        cmp     rax, [rel secret_guid + 8]
        jne     .none
        mov     r8d, [rbx + 16]         ; total length
        cmp     r8d, 20 + 20
        jb      .bad
        mov     ecx, [rbx + 20 + 16]    ; first entry's length, its header included
        cmp     ecx, 20
        jb      .bad
        lea     eax, [rcx + 20]
        cmp     eax, r8d
        ja      .bad                    ; the entry overruns the table
        sub     ecx, 20                 ; data length
        cmp     ecx, MAX_SECRET
        jbe     .print
        mov     ecx, MAX_SECRET
.print:
        lea     rsi, [rel msg_secret]
        call    puts64
        lea     rsi, [rbx + 20 + 20]    ; the data
        jrcxz   .eol
.char:  lodsb
        test    al, al
        jz      .eol                    ; a NUL ends a text secret
        call    putc64
        loop    .char
.eol:   mov     al, 10
        call    putc64
        jmp     .done
.bad:
        lea     rsi, [rel msg_secret_bad]
        call    puts64
        jmp     .done
.none:
        lea     rsi, [rel msg_no_secret]
        call    puts64
.done:
        lea     rsi, [rel msg_halt]
        call    puts64
halt64:
        cli
        hlt
        jmp     halt64

; build_tables64: as build_tables32, with rbx the mask ORed into every entry
build_tables64:
        push    rdi
        mov     ecx, 6 * 0x1000 / 8
        xor     eax, eax
        rep     stosq
        pop     rdi
        lea     rax, [rdi + 0x1000 + PTE_P + PTE_RW]
        or      rax, rbx
        mov     [rdi], rax              ; PML4E 0 -> PDPT, C-bit
        lea     rax, [rdi + 0x2000 + PTE_P + PTE_RW]
        or      rax, rbx
        xor     ecx, ecx
.pdpte: mov     [rdi + 0x1000 + rcx * 8], rax   ; PDPTE -> PD, C-bit
        add     rax, 0x1000
        inc     ecx
        cmp     ecx, 4
        jb      .pdpte
        mov     eax, PTE_P + PTE_RW + PTE_PS
        or      rax, rbx
        xor     ecx, ecx
.pde:   mov     [rdi + 0x2000 + rcx * 8], rax   ; 2 MiB leaf, C-bit
        add     rax, 0x200000
        inc     ecx
        cmp     ecx, 2048
        jb      .pde
        ret

SERIAL_ROUTINES 64, rax, rsi, rdx

; ---- read-only data -------------------------------------------------------------

align 8
; 1e74f542-71dd-4d66-963e-ef4287ff173b in the little-endian GUID byte order
secret_guid:
        dd      0x1e74f542
        dw      0x71dd, 0x4d66
        db      0x96, 0x3e, 0xef, 0x42, 0x87, 0xff, 0x17, 0x3b

msg_pmode:          db "sevguest: protected mode", 10, 0
msg_sev_active:     db "SEV: active, C-bit ", 0
msg_reduced:        db ", reduced-phys-bits ", 0
msg_cbit_low:       db "SEV: C-bit below 32, not supported", 10, 0
msg_no_sev:         db "SEV not active", 10, 0
msg_lmode:          db "sevguest: long mode", 10, 0
msg_verified:       db "C-bit page tables verified", 10, 0
msg_verify_failed:  db "C-bit page tables: verification FAILED", 10, 0
msg_plain:          db "page tables without C-bit loaded", 10, 0
msg_secret:         db "secret: ", 0
msg_secret_bad:     db "secret: malformed table", 10, 0
msg_no_secret:      db "no secret injected", 10, 0
msg_halt:           db "sevguest: halt", 10, 0

; ---- real mode: the reset vector jumps here (CS base 0xFFFF0000) ----------------

        times   IMAGE_SIZE - 0x80 - ($ - $$) db 0
bits 16
start16:
        cli
        cld
        o32 lgdt [cs:gdt_ptr - IMAGE_BASE]
        mov     eax, cr0
        or      al, 1                   ; PE
        mov     cr0, eax
        jmp     dword SEL_CODE32:start32

align 8
gdt:
        dq      0                       ; null
        dq      0x00CF9B000000FFFF      ; 0x08: 32-bit code, flat
        dq      0x00CF93000000FFFF      ; 0x10: data, flat
        dq      0x00AF9B000000FFFF      ; 0x18: 64-bit code
gdt_end:
gdt_ptr:
        dw      gdt_end - gdt - 1
        dd      gdt

; ---- the reset vector, at 0xFFFFFFF0 --------------------------------------------

        times   IMAGE_SIZE - 0x10 - ($ - $$) db 0
reset_vector:
        jmp     start16
        times   IMAGE_SIZE - ($ - $$) db 0
