# The virtual IRS of a 7.4 VM: KVM's emulated IRS config frame, the guest's GIC CD*
# instructions, and the IRS_REGS / IST device groups' core, as inline C.
#
# Rules this file keeps:
# - The register file is KVM's (vgic-irs-v5.c @ 2dfb5d4fa408): the region table, the guest
#   read / write handlers, the userspace (uaccess) hooks, kvm_vgic_v5_irs_init's reset
#   values. Offsets and fields are arm-gic-v5.h's (@ 49dc289de52b).
# - The CD* instructions and the acknowledge are the hardware's (KVM does not trap them; the
#   state lives in the virtual IST, ist.pxd); their effects follow the architecture as QEMU's
#   physical IRS implements it (hw/intc/arm_gicv5.c, gicv5_set_*), not QEMU's two SPI quirks
#   (irs-spi-source-check.md).
# - Return conventions: 0 / -errno for what KVM can fail; guest MMIO never fails (RAZ/WI).
# - Every function is noexcept nogil; callers hold vm.lock. Only profiles with irs_uapi
#   reach them (the callers check).

from libc.stdint cimport uint32_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.errno cimport EINVAL, ENXIO, ENOMEM
from gic5core.state cimport (vm_t, vcpu_t, MAX_VCPUS, IRQ_WORD_VCPU_IDS, NO_VCPU,
                             SPI_READY_ROW)
from gic5core.ist cimport (ist_store, vdpend, ISTE_PENDING, ISTE_ACTIVE, ISTE_HM, ISTE_ENABLE,
                           ISTE_IRM, ISTE_HWU, ISTE_PRIO_SHIFT, ISTE_IAFFID_SHIFT)

cdef enum:
    IRS_FRAME = 0x10000          # the CONFIG_FRAME; the SETLPI frame above has no registers
    # register offsets (GICV5_IRS_*)
    IRS_IDR0 = 0x000
    IRS_IDR1 = 0x004
    IRS_IDR2 = 0x008
    IRS_IDR3 = 0x00c
    IRS_IDR4 = 0x010
    IRS_IDR5 = 0x014
    IRS_IDR6 = 0x018
    IRS_IDR7 = 0x01c
    IRS_IIDR = 0x040
    IRS_AIDR = 0x044
    IRS_CR0 = 0x080
    IRS_CR1 = 0x084
    IRS_SYNCR = 0x0c0
    IRS_SYNC_STATUSR = 0x0c4
    IRS_SPI_VMR = 0x100
    IRS_SPI_SELR = 0x108
    IRS_SPI_DOMAINR = 0x10c
    IRS_SPI_RESAMPLER = 0x110
    IRS_SPI_CFGR = 0x114
    IRS_SPI_STATUSR = 0x118
    IRS_PE_SELR = 0x140
    IRS_PE_STATUSR = 0x144
    IRS_PE_CR0 = 0x148
    IRS_IST_BASER = 0x180
    IRS_IST_CFGR = 0x190
    IRS_IST_STATUSR = 0x194
    IRS_MAP_L2_ISTR = 0x1c0
    CORESIGHT_DEVARCH = 0xffbc
    # values
    IRS_IIDR_KVM = 0x04b0043b    # PRODUCT_ID_KVM 0x4b << 20 | IMPLEMENTER_ARM 0x43b
    IRS_CR0_IRSEN = 1
    IRS_CR0_IDLE = 2
    IRS_CR1_MASK = 0xf5ff        # every CR1 field KVM stores (VMT_WA 9, VPET_WA 11 dropped)
    IRS_IDR0_FLAGS = 0x1fc0      # VIRT 6, ONE_N 7, VIRT_ONE_N 8, SETLPI 9, MEC 10, MPAM 11, SWE 12
    IRS_IDR2_LPI = 1 << 5
    IRS_IST_CFGR_MASK = 0x101ff  # STRUCTURE 16, ISTSZ 8:7, L2SZ 6:5, LPI_ID_BITS 4:0

cdef extern from *:
    """
    /* GENMASK_ULL(55, 6): IRS_IST_BASER.ADDR */
    #define GIC5_IST_BASER_ADDR 0x00ffffffffffffc0ULL
    /* The CoreSight identification values at 0xffd0.. (PIDR4..7, PIDR0..3, CIDR0..3) */
    static const unsigned char gic5_coresight_ids[12] = {
        0x04, 0, 0, 0, 0x4b, 0xb0, 0x0b, 0x00, 0x0d, 0xf0, 0x05, 0xb1 };
    """
    uint64_t IST_BASER_ADDR "GIC5_IST_BASER_ADDR"
    const unsigned char* CORESIGHT_IDS "gic5_coresight_ids"


# --- the region table (vgic_v5_irs_registers) ---------------------------------------------------

cdef inline unsigned int irs_reg_width(unsigned int off) noexcept nogil:
    # The width in bytes of the register whose region starts at off (4 or 8), or 0 when no
    # region starts there. 64-bit regions take 8-byte accesses and 4-byte ones at +0 / +4.
    if off <= IRS_IDR7:
        return 4 if (off & 3) == 0 else 0
    if off in (IRS_IIDR, IRS_AIDR, IRS_CR0, IRS_CR1, IRS_SYNCR, IRS_SYNC_STATUSR,
               IRS_SPI_SELR, IRS_SPI_DOMAINR, IRS_SPI_RESAMPLER, IRS_SPI_CFGR, IRS_SPI_STATUSR,
               IRS_PE_SELR, IRS_PE_STATUSR, IRS_PE_CR0, IRS_IST_CFGR, IRS_IST_STATUSR,
               IRS_MAP_L2_ISTR,
               0x210, 0x214, 0x258, 0x25c, 0x288, 0x28c, 0x308,   # VMT_CFGR .. SAVE_VM_STATUSR
               0x340, 0x344, 0x380, 0x384):                        # MEC_*, MPAM_*
        return 4
    if off in (IRS_SPI_VMR, IRS_IST_BASER,
               0x200, 0x240, 0x248, 0x250, 0x280,                  # VMT_BASER, VPE_*, VM_DBR
               0x2c0, 0x2c8, 0x2d0, 0x2d8, 0x2e0, 0x300,           # VMAP_*, SAVE_VMR
               0x3c0, 0x3c8, 0x3d0):                               # SWERR_*
        return 8
    if off == CORESIGHT_DEVARCH or (0xffd0 <= off <= 0xfffc and (off & 3) == 0):
        return 4
    return 0


cdef inline int irs_region(unsigned int off, unsigned int* base) noexcept nogil:
    # vgic_get_mmio_region: the region containing off; returns its width, or 0 for none.
    cdef unsigned int w
    if off >= IRS_FRAME:
        return 0
    w = irs_reg_width(off & ~3u)
    if w:
        base[0] = off & ~3u
        return w
    if off >= 4 and irs_reg_width((off & ~3u) - 4) == 8 and (off & 4):
        base[0] = (off & ~3u) - 4
        return 8
    return 0


# --- state helpers ------------------------------------------------------------------------------

cdef inline bint spi_selr_valid(const vm_t* vm) noexcept nogil:
    # vgic_v5_is_spi_selr_valid: spi_range and spi_irs_range non-zero (both nr_spis),
    # spi_base (0) <= id < spi_base + spi_irs_range.
    return vm.nr_spis != 0 and vm.spi_selr < vm.nr_spis


cdef inline bint vcpu_id_exists(const vm_t* vm, uint32_t vcpu_id) noexcept nogil:
    # kvm_get_vcpu_by_id for an IAFFID of up to 16 bits.
    return vcpu_id < IRQ_WORD_VCPU_IDS and vm.id_to_index[vcpu_id] != NO_VCPU


cdef inline unsigned int fls32(uint32_t x) noexcept nogil:
    cdef unsigned int n = 0
    while x:
        n += 1
        x >>= 1
    return n


cdef inline unsigned int roundup_pow_of_two(uint32_t x) noexcept nogil:
    cdef uint32_t p = 1
    while p < x:
        p <<= 1
    return p


cdef inline int irs_init(vm_t* vm) noexcept nogil:
    # kvm_vgic_v5_irs_init (at CTRL_INIT, 7.4): the SPI IST of 2 ** spi_id_bits zeroed ISTEs
    # (vgic_v5_alloc_linear_ist: not pending, inactive, edge, disabled, priority 0, IAFFID 0),
    # and the register reset values; vgic.enabled stays 0. vpe_id_bits is the VMTE's
    # (vgic_v5_vmte_init): fls(max(2, roundup_pow_of_two(max vcpu_id + 1))) - 1. The model's
    # ready rows (ist.pxd) are allocated first: 0, or -ENOMEM with nothing changed (the
    # kernel's IST allocation fails the same way).
    cdef unsigned int i, top = 0
    cdef uint64_t* ready
    for i in range(<unsigned int>vm.nr_vcpus):
        if vm.vcpus[i].vcpu_id > top:
            top = vm.vcpus[i].vcpu_id
    ready = <uint64_t*>calloc(<size_t>(top + 1) * SPI_READY_ROW, sizeof(uint64_t))
    if ready == NULL:
        return -ENOMEM
    free(vm.spi_ready)
    vm.spi_ready = ready  # all zero: no ISTE is ready
    vm.spi_ready_ids = top + 1
    vm.ist_entries = roundup_pow_of_two(vm.nr_spis) if vm.prof.spi_ids_pow2 else vm.nr_spis
    for i in range(1024):
        vm.ist[i] = 0
    top = roundup_pow_of_two(top + 1)
    vm.vpe_id_bits = <unsigned char>(fls32(top if top > 2 else 2) - 1)
    vm.irs_idr0 = 1 | (vm.host_pa_range << 2)
    vm.irs_idr1_pri = vm.host_irs_pri_bits - 1
    vm.irs_idr2 = (vm.host_min_lpi_id_bits << 6) | \
        (vm.host_ist_id_bits if vm.host_ist_id_bits < 16 else 16)
    vm.irs_cr1 = 0
    vm.spi_selr = 0xffffff
    vm.pe_selr = 0xffff
    vm.ist_cfgr = 0
    vm.ist_baser = 0
    vm.lpi_ist_restore_pending = 0
    return 0


cdef inline void lpi_ist_free(vm_t* vm) noexcept nogil:
    free(vm.lpi_ist)
    vm.lpi_ist = NULL
    vm.lpi_ist_words = 0


cdef inline int lpi_ist_alloc(vm_t* vm, unsigned int id_bits) noexcept nogil:
    # vgic_v5_lpi_ist_alloc: a zeroed host LPI IST of 2 ** lpi_id_bits entries.
    cdef uint32_t* t = <uint32_t*>calloc((<size_t>1) << id_bits, sizeof(uint32_t))
    if t == NULL:
        return -ENOMEM
    free(vm.lpi_ist)
    vm.lpi_ist = t
    vm.lpi_ist_words = (<uint32_t>1) << id_bits
    return 0


cdef inline bint ist_cfgr_valid(const vm_t* vm) noexcept nogil:
    # vgic_v5_ist_cfgr_valid: LPI_ID_BITS in [IDR2.MIN_LPI_ID_BITS, IDR2.ID_BITS]; ISTSZ the
    # entry size IDR2.ISTMD implies (4 bytes: ISTMD is always 0 for a guest); a two-level
    # STRUCTURE only if IDR2.IST_LEVELS, and then L2SZ must equal IDR2.IST_L2SZ.
    cdef uint32_t bits = vm.ist_cfgr & 0x1f
    cdef uint32_t istsz = (vm.ist_cfgr >> 7) & 3
    cdef uint32_t istmd = (vm.irs_idr2 >> 14) & 1, istmd_sz = (vm.irs_idr2 >> 15) & 0x1f
    cdef uint32_t expected
    if bits < ((vm.irs_idr2 >> 6) & 0xf) or bits > (vm.irs_idr2 & 0x1f):
        return False
    if not istmd:
        expected = 0
    elif bits >= istmd_sz:
        expected = 2
    else:
        expected = 1
    if istsz != expected:
        return False
    if (vm.ist_cfgr >> 16) & 1:
        if not ((vm.irs_idr2 >> 10) & 1):
            return False
        return ((vm.ist_cfgr >> 5) & 3) == ((vm.irs_idr2 >> 11) & 7)
    return True


cdef inline uint64_t baser_of(uint64_t val) noexcept nogil:
    # vgic_v5_update_irs_ist_baser: ADDR 55:6 and VALID kept.
    return (val & IST_BASER_ADDR) | (val & 1)


cdef inline void write_ist_baser(vm_t* vm, uint64_t val) noexcept nogil:
    # vgic_v5_write_irs_ist_baser (the guest's write, L-3): valid -> valid ignored (the address
    # cannot change); valid -> invalid frees the host LPI IST; invalid -> valid needs a valid
    # CFGR and allocates it (an error is dropped by the MMIO caller: BASER stays invalid).
    cdef bint was = vm.ist_baser & 1, now = val & 1
    if was and now:
        return
    if was and not now:
        vm.ist_baser = baser_of(val)
        lpi_ist_free(vm)
        return
    if now:
        if not ist_cfgr_valid(vm):
            return
        if lpi_ist_alloc(vm, vm.ist_cfgr & 0x1f) != 0:
            return
    vm.ist_baser = baser_of(val)


cdef inline uint64_t update_64bit_reg(uint64_t reg, unsigned int offset, unsigned int length,
                                      uint64_t val) noexcept nogil:
    # update_64bit_reg (vgic-mmio.h): replace the bytes a 4- or 8-byte access writes.
    cdef unsigned int lower = (offset & 4) * 8
    cdef uint64_t m
    if length == 8:
        return val
    m = (<uint64_t>0xffffffffu) << lower
    return (reg & ~m) | ((val & (<uint64_t>0xffffffffu)) << lower)


# --- guest reads and writes (the MMIO handlers) ------------------------------------------------

cdef inline uint64_t irs_reg_read(const vm_t* vm, unsigned int base) noexcept nogil:
    # The guest read handler of the register at base (vgic_v5_mmio_read_irs_misc / _spi /
    # _ist, vgic_v5_coresight_read; vgic_mmio_read_raz for the rest). 64-bit values whole.
    cdef unsigned int i
    if base == IRS_IDR0:
        return vm.irs_idr0
    if base == IRS_IDR1:
        # PE_CNT = online vCPUs, IAFFID_BITS = vpe_id_bits - 1, PRIORITY_BITS as stored
        return (<uint64_t>vm.nr_vcpus & 0xffff) | ((<uint64_t>vm.vpe_id_bits - 1) << 16) | \
            ((<uint64_t>vm.irs_idr1_pri & 7) << 20)
    if base == IRS_IDR2:
        return vm.irs_idr2 | IRS_IDR2_LPI
    if base == IRS_IDR5 or base == IRS_IDR6:
        return vm.nr_spis
    if base == IRS_IIDR:
        return IRS_IIDR_KVM
    if base == IRS_CR0:
        return IRS_CR0_IDLE | (IRS_CR0_IRSEN if vm.irs_enabled else 0)
    if base == IRS_CR1:
        return vm.irs_cr1
    if base == IRS_SYNC_STATUSR or base == IRS_IST_STATUSR:
        return 1  # IDLE: KVM handles every write synchronously
    if base == IRS_SPI_SELR:
        return vm.spi_selr
    if base == IRS_SPI_DOMAINR:
        return 1  # Non-secure, whatever SELR says
    if base == IRS_SPI_CFGR:
        if not spi_selr_valid(vm):
            return 0
        return (vm.spi_cfg_level[vm.spi_selr >> 6] >> (vm.spi_selr & 63)) & 1
    if base == IRS_SPI_STATUSR:
        return 1 | (2 if spi_selr_valid(vm) else 0)
    if base == IRS_PE_SELR:
        return vm.pe_selr
    if base == IRS_PE_STATUSR:
        return 1 | (6 if vcpu_id_exists(vm, vm.pe_selr) else 0)  # IDLE | ONLINE | V
    if base == IRS_PE_CR0:
        return 1 if vcpu_id_exists(vm, vm.pe_selr) else 0       # DPS
    if base == IRS_IST_BASER:
        return vm.ist_baser
    if base == IRS_IST_CFGR:
        return vm.ist_cfgr
    if base == CORESIGHT_DEVARCH:
        return 0x47705a19
    if base >= 0xffd0:
        # PIDR4..7, PIDR0..3, CIDR0..3
        i = (base - 0xffd0) >> 2
        return CORESIGHT_IDS[i]
    return 0


cdef inline bint irs_access_ok(unsigned int off, unsigned int size, unsigned int base,
                               unsigned int width) noexcept nogil:
    # check_region (vgic-mmio.c): 32-bit registers take only an aligned 4-byte access;
    # 64-bit ones an 8-byte access at their base or a 4-byte one at base or base + 4.
    if width == 4:
        return size == 4 and off == base
    return (size == 8 and off == base) or (size == 4 and (off == base or off == base + 4))


cdef inline uint64_t irs_mmio_read(const vm_t* vm, unsigned int off,
                                   unsigned int size) noexcept nogil:
    # dispatch_mmio_read for the IRS iodev: no region or a refused access reads as zero.
    cdef unsigned int base = 0, width = irs_region(off, &base)
    cdef uint64_t value
    if width == 0 or not irs_access_ok(off, size, base, width):
        return 0
    value = irs_reg_read(vm, base)
    if width == 8:
        value >>= (off - base) * 8       # extract_bytes
        if size == 4:
            value &= <uint64_t>0xffffffffu
    return value


cdef inline void request_reload_all(vm_t* vm) noexcept nogil:
    # kvm_make_all_cpus_request(KVM_REQ_RELOAD_GICv5): served before each vCPU's next entry.
    cdef int i
    for i in range(vm.nr_vcpus):
        vm.vcpus[i].reload_req = 1


cdef inline bint store_plain_reg(vm_t* vm, unsigned int base, uint32_t v32) noexcept nogil:
    # The guest write handlers that only store a field (vgic_v5_mmio_write_irs_misc CR1 and
    # PE_SELR, vgic_v5_mmio_write_irs_spi SPI_SELR); a userspace SET of these uses the same
    # handlers. Returns whether base was one of them.
    if base == IRS_CR1:
        vm.irs_cr1 = v32 & IRS_CR1_MASK
    elif base == IRS_PE_SELR:
        vm.pe_selr = v32 & 0xffff
    elif base == IRS_SPI_SELR:
        vm.spi_selr = v32 & 0xffffff
    else:
        return False
    return True


cdef inline void irs_mmio_write(vm_t* vm, unsigned int off, unsigned int size,
                                uint64_t val) noexcept nogil:
    # dispatch_mmio_write for the IRS iodev: the guest write handlers
    # (vgic_v5_mmio_write_irs_misc / _spi / _ist); everything else is WI.
    cdef unsigned int base = 0, width = irs_region(off, &base)
    cdef bint en
    cdef uint32_t v32 = <uint32_t>val
    if width == 0 or not irs_access_ok(off, size, base, width):
        return
    if base == IRS_CR0:
        en = v32 & IRS_CR0_IRSEN
        if en != vm.irs_enabled:
            vm.irs_enabled = en
            request_reload_all(vm)  # "Reload other vCPUs on an edge" (the writer too)
    elif store_plain_reg(vm, base, v32):
        pass
    elif base == IRS_SPI_CFGR:
        # KVM's config only (the hardware's HM is not touched)
        if spi_selr_valid(vm):
            if v32 & 1:
                vm.spi_cfg_level[vm.spi_selr >> 6] |= (<uint64_t>1) << (vm.spi_selr & 63)
            else:
                vm.spi_cfg_level[vm.spi_selr >> 6] &= ~((<uint64_t>1) << (vm.spi_selr & 63))
    elif base == IRS_IST_CFGR:
        if not (vm.ist_baser & 1):  # ignored while the IST is valid
            vm.ist_cfgr = v32 & IRS_IST_CFGR_MASK
    elif base == IRS_IST_BASER:
        write_ist_baser(vm, update_64bit_reg(vm.ist_baser, off - base, size, val))


# --- userspace access (KVM_DEV_ARM_VGIC_GRP_IRS_REGS) ------------------------------------------

cdef inline bint irs_uaccess_status(unsigned int base) noexcept nogil:
    # The *_STATUSR regions with vgic_v5_mmio_uaccess_read_irs_status / uaccess_write_wi.
    return base in (IRS_SYNC_STATUSR, IRS_SPI_STATUSR, IRS_PE_STATUSR, IRS_IST_STATUSR)


cdef inline int irs_uaccess_lookup(uint64_t attr, unsigned int* base) noexcept nogil:
    # vgic_v5_irs_attr_regs_access / vgic_v5_has_attr_regs: the region is looked up with the
    # attr cut to 32 bits (vgic_find_mmio_region takes an unsigned int), so bits 63:32 are
    # ignored; no region ENXIO; the full attr must be aligned to the region's width (8 for
    # 64-bit ones, so base + 4 is EINVAL), which for the low bits means "the region's base".
    cdef unsigned int width
    cdef uint64_t off = attr & 0xffffffffu
    if off >= IRS_FRAME:
        return -ENXIO
    width = irs_region(<unsigned int>off, base)
    if width == 0:
        return -ENXIO
    if off != base[0]:
        return -EINVAL
    return 0


cdef inline uint64_t irs_uaccess_read(const vm_t* vm, unsigned int base) noexcept nogil:
    # GET: the uaccess read hook where there is one (the STATUSR: IDLE only, never V / ONLINE),
    # else the guest read handler, as vCPU index 0.
    if irs_uaccess_status(base):
        return 1
    return irs_reg_read(vm, base)


cdef inline int lpi_ist_exists(const vm_t* vm) noexcept nogil:
    # vgic_v5_lpi_ist_exists: 1 when the host LPI IST is allocated (the VM info is always
    # there once CTRL_INIT ran, so its ENXIO cannot happen here).
    return 1 if vm.lpi_ist != NULL else 0


cdef inline int irs_uaccess_write(vm_t* vm, unsigned int base, uint64_t val) noexcept nogil:
    # SET: vgic_v5_mmio_uaccess_write_irs for the registers that have it, the STATUSR hooks
    # (WI), else the guest write handler (CR1, SPI_SELR, PE_SELR; WI for the rest).
    cdef uint32_t v = <uint32_t>val
    cdef uint32_t bits
    if base == IRS_IDR0:
        if (v & 3) != 1 or (v & IRS_IDR0_FLAGS):
            return -EINVAL  # Non-secure domain only; no VIRT, 1-of-N, SETLPI, MEC, MPAM, SWE
        # PA_RANGE and IRSID are stored unchecked
        vm.irs_idr0 = 1 | (v & (0xf << 2)) | (v & (<uint32_t>0xffff0000u))
        return 0
    if base == IRS_IDR1:
        if ((v >> 16) & 0xf) != <uint32_t>(vm.vpe_id_bits - 1):
            return -EINVAL
        if ((v >> 20) & 7) > <uint32_t>(vm.host_irs_pri_bits - 1):
            return -EINVAL
        vm.irs_idr1_pri = (v >> 20) & 7  # PE_CNT ignored
        return 0
    if base == IRS_IDR2:
        bits = v & 0x1f
        if not (v & IRS_IDR2_LPI) or (v & (1 << 10)) or (v & (1 << 14)) or ((v >> 15) & 0x1f):
            return -EINVAL  # LPIs always; linear, non-metadata ISTs only
        if bits > vm.host_ist_id_bits:
            return -EINVAL
        if ((v >> 6) & 0xf) < vm.host_min_lpi_id_bits or ((v >> 6) & 0xf) > bits:
            return -EINVAL
        vm.irs_idr2 = v & 0xfffdf & ~(<uint32_t>IRS_IDR2_LPI)  # six fields, IST_L2SZ unchecked
        return 0
    if base == IRS_IDR5 or base == IRS_IDR6:
        return 0 if (v & 0x1ffffff) == vm.nr_spis else -EINVAL
    if base == IRS_IDR7:
        return 0 if (v & 0xffffff) == 0 else -EINVAL
    if base == IRS_IIDR or base == IRS_AIDR or base == IRS_SPI_CFGR or irs_uaccess_status(base):
        return 0  # accepted and ignored (SPI_CFGR: trigger modes come from the IST restore)
    if base == IRS_CR0:
        vm.irs_enabled = v & IRS_CR0_IRSEN  # no reload request from userspace
        return 0
    if base == IRS_IST_BASER:
        if lpi_ist_exists(vm) and baser_of(val) != vm.ist_baser:
            return -EINVAL  # locked while the host LPI IST exists
        if not (vm.ist_baser & 1) and (val & 1):
            vm.lpi_ist_restore_pending = 1
        vm.ist_baser = baser_of(val)  # no allocation here
        return 0
    if base == IRS_IST_CFGR:
        if lpi_ist_exists(vm) and (v & IRS_IST_CFGR_MASK) != vm.ist_cfgr:
            return -EINVAL
        vm.ist_cfgr = v & IRS_IST_CFGR_MASK  # stored even while IST_BASER.VALID
        return 0
    store_plain_reg(vm, base, v)  # the guest handler (WI for every other register)
    return 0


# --- the guest's GIC CD* instructions (hardware) ----------------------------------------------

cdef inline int cd_spi(const vm_t* vm, uint32_t intid) noexcept nogil:
    # The SPI an instruction's INTID names in the virtual IRS, or -1: TYPE 3 and ID inside
    # the VM's SPI IST (2 ** spi_id_bits entries). LPIs are out of scope (no effect), PPIs are
    # not the IRS's, and a VM without an SPI IST (before CTRL_INIT, PPI-only profiles) has none.
    cdef uint32_t id = intid & 0xffffff
    if (intid >> 29) != 3 or id >= vm.ist_entries:
        return -1
    return <int>id


cdef inline void cd_priority(vm_t* vm, int spi, unsigned int prio) noexcept nogil:
    # GIC CDPRI (QEMU gicv5_set_priority): the hardware keeps the IRS's implemented priority
    # bits, the high-order ones (host irs_pri_bits; unimplemented low-order bits read 0).
    cdef uint32_t keep = (0x1f << (5 - vm.host_irs_pri_bits)) & 0x1f
    cdef uint32_t w = vm.ist[spi] & ~(<uint32_t>0x1f << ISTE_PRIO_SHIFT)
    ist_store(vm, spi, w | ((prio & keep) << ISTE_PRIO_SHIFT))


cdef inline void cd_affinity(vm_t* vm, int spi, uint32_t iaffid) noexcept nogil:
    # GIC CDAFF (gicv5_set_target): IAFFID := iaffid; IRM 1 (1-of-N) is not offered and is
    # treated as targeted (the ISTE's IRM bit is left as it is: 0 but after a restore).
    cdef uint32_t w = vm.ist[spi] & 0xffff
    ist_store(vm, spi, w | ((iaffid & 0xffff) << ISTE_IAFFID_SHIFT))


cdef inline void cd_flag(vm_t* vm, int spi, uint32_t flag, bint on) noexcept nogil:
    # CDEN / CDDIS (ENABLE), CDPEND (PENDING), CDHM (HM), CDDI (ACTIVE := 0).
    cdef uint32_t w = vm.ist[spi]
    ist_store(vm, spi, (w | flag) if on else (w & ~flag))


cdef inline uint64_t cd_rcfg(const vm_t* vm, uint32_t intid) noexcept nogil:
    # GIC CDRCFG (gicv5_request_config): the ICC_ICSR_EL1 image; F (bit 0) alone for an
    # interrupt the IRS cannot reach.
    cdef int spi = cd_spi(vm, intid)
    cdef uint32_t w
    if spi < 0:
        return 1
    w = vm.ist[spi]
    return ((<uint64_t>((w >> 3) & 1)) << 1 | (<uint64_t>(w & 1)) << 2 |
            (<uint64_t>((w >> 4) & 1)) << 3 | (<uint64_t>((w >> 1) & 1)) << 4 |
            (<uint64_t>((w >> 2) & 1)) << 5 | (<uint64_t>((w >> ISTE_PRIO_SHIFT) & 0x1f)) << 11 |
            (<uint64_t>(w >> ISTE_IAFFID_SHIFT)) << 32)


# --- IST restore (vgic_v5_restore_ist_entry) ----------------------------------------------------

cdef inline bint restore_spi_entry(vm_t* vm, unsigned int i, uint32_t w) noexcept nogil:
    # vgic_v5_process_iste + vgic_v5_restore_spi_config (vgic-v5-tables.c): KVM's config from
    # the raw HM, the latch := PENDING (EDGE; LEVEL: set if pending, cleared if not, SPIs never
    # being active), the host ISTE := the word without PENDING and HWU. Returns whether the
    # entry was pending (tracked for the replay).
    cdef unsigned int k = i >> 6
    cdef uint64_t bit = (<uint64_t>1) << (i & 63)
    if w & ISTE_HM:
        vm.spi_cfg_level[k] |= bit
    else:
        vm.spi_cfg_level[k] &= ~bit
    if w & ISTE_PENDING:
        vm.spi_latch[k] |= bit
    else:
        vm.spi_latch[k] &= ~bit
    ist_store(vm, i, w & ~(<uint32_t>(ISTE_PENDING | ISTE_HWU)))
    return (w & ISTE_PENDING) != 0
