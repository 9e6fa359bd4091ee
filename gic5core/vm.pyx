# VmCore: the KVM side of one VM (lifecycle, attributes that touch state, injection, run).
#
# Rules this file keeps:
# - Every def method does its C work between gic5_lock/gic5_unlock on vm.lock, computing a
#   0 / -errno code, and raises (through errors.check, once) only after unlocking.
# - The behaviour itself lives in ppi.pxd; this file adds the ioctl-shaped checks in the
#   kernel's order and the bookkeeping of vCPUs.
# - Python-level argument validation that the kernel never sees (types, negative ids, buffer
#   handling) is the front end's; C-type range errors (OverflowError) come from Cython's
#   argument conversion before anything runs.
#
# What is atomic against what (the kernel takes the target IRQ's raw spinlock for an
# injection and config_lock for configuration):
# - vm.lock is one spinlock per VM held for the whole of every core call: a per-call
#   irq_line, a whole chunk of a batch, a first run + flush, a fold, one guest instruction,
#   one attribute operation, one inspection. So every core call is atomic against every
#   other on the same VM, which is stronger than the kernel's per-IRQ lock and therefore enough: any
#   interleaving of gic5 calls is a serial order the kernel could also have produced.
# - The front end's threading.Lock (the config_lock) additionally serialises configuration
#   sequences that span several core calls (create, INIT, attributes, first run).
# - Different VMs share nothing: threads working on different VMs never contend.

"""VmCore: one VM's KVM-side state and its ioctl-shaped operations (gic5.Vm subclasses it);
vcpu_state_size(profile), as_u32_array(values, name), batch_arrays(irqs, levels) and
check_irs_host(max_vpes, ipa_bits).
"""

from libc.stdint cimport int32_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.errno cimport EINVAL, EBUSY, EEXIST, ENXIO, ENODEV, EFAULT, EIO, E2BIG, ENOENT
import numpy as np

from gic5core.errors cimport check_rc as check
from gic5core.args cimport need_int
from gic5core.mask cimport (mask128, mask_make, bitmap_zero, bitmap_fill, bit_mask, set_bit,
                            bitmap_and)
from gic5core.profile cimport profile_t, profile_load
from gic5core.profile import IRS_POLICY as _IRS_POLICY
from gic5core.state cimport (vm_t, vcpu_t, gic5_lock, gic5_unlock, vcpu_alloc_size, MAX_VCPUS,
                             NO_VCPU, SW_PPI, PPI_PMUIRQ, PPI_CNTV, PPI_CNTP, PPI_CNTHV, PPI_CNTHP,
                             PPI_INTID_BASE, TIMER_VTIMER, TIMER_PTIMER, OWNER_KERNEL,
                             IRQ_WORD_VCPU_IDS, NR_SPIS_MAX, NR_SPIS_DEFAULT)
from gic5core.ppi cimport (update_ppi_fast, irq_line_one, irq_line_gated, inject_ppi,
                           userspace_mask, finalize, flush, fold, has_pending, vgic_pending,
                           kvm_pending, exposed_of,
                           vcpu_load, vcpu_put, apply_recorded_timer, drive_timer_line,
                           serve_requests, SHAPE_ANY)
from gic5core.sysregs cimport sysreg_lookup, sysreg_read, sysreg_write, SR_NONE
from gic5core.ist cimport vdpend
from gic5core.irs cimport (irs_init, irs_uaccess_lookup, irs_uaccess_read, irs_uaccess_write,
                           lpi_ist_exists, lpi_ist_alloc, lpi_ist_free, ist_cfgr_valid,
                           restore_spi_entry)

cdef enum:
    KVM_DEV_TYPE_ARM_VGIC_V5 = 16
    KVM_CREATE_DEVICE_TEST = 1
    KVM_ARMV8_PMU_GICV5_IRQ = 0x20000017
    KVM_ARM_VCPU_PMU_V3_IRQ = 0
    KVM_ARM_VCPU_PMU_V3_INIT = 1
    KVM_VGIC_V5_ADDR_TYPE_IRS = 6
    KVM_VGIC_V3_ADDR_TYPE_REDIST_REGION = 5
    KVM_VGIC_V5_IRS_SIZE = 0x20000   # CONFIG_FRAME + SETLPI_FRAME, 64 KiB each
    SZ_64K = 0x10000

# Timer PPI numbers before a V5 device exists (the GICv3-style defaults) and after.
cdef uint32_t TIMER_DEFAULT[4]
TIMER_DEFAULT[:] = [PPI_CNTV, PPI_CNTP, PPI_CNTHV, PPI_CNTHP]


cdef enum:
    BATCH_CHUNK = 4096   # elements per lock hold in irq_line_batch


def as_u32_array(values, str name):
    """as_u32_array(values, name) -> a C-contiguous uint32 array, converted once.

    Accepts any 1-D integer array or sequence; ValueError for another shape or a value outside
    0..2**32-1, TypeError for non-integer data.
    """
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, not {arr.ndim}-D")
    if arr.size == 0:
        return np.zeros(0, dtype=np.uint32)  # an empty list has no integer dtype to check
    if arr.dtype.kind in "fO" and not isinstance(values, np.ndarray):
        # Python ints too wide for int64 make numpy choose float64 or object: judge the
        # elements themselves, so an out-of-range int is a ValueError, not "not integers".
        if all(isinstance(x, (int, np.integer)) for x in values):
            raise ValueError(f"{name} has a value outside 0..2**32-1 (a __u32)")
        raise TypeError(f"{name} must hold integers")
    if arr.dtype.kind not in "iub":
        raise TypeError(f"{name} must hold integers, not {arr.dtype}")
    # Unsigned types of 32 bits or fewer (and bool) cannot hold an out-of-range value: the two
    # passes over the array that min/max cost are skipped for them (the common uint32 input).
    if not (arr.dtype.kind == "b" or (arr.dtype.kind == "u" and arr.dtype.itemsize <= 4)) \
            and (arr.min() < 0 or arr.max() > 0xFFFFFFFF):
        raise ValueError(f"{name} has a value outside 0..2**32-1 (a __u32)")
    return np.ascontiguousarray(arr, dtype=np.uint32)


def batch_arrays(irqs, levels):
    """batch_arrays(irqs, levels) -> (irqs, levels) as equal-length uint32 arrays.

    The argument contract of irq_line_batch on both backends, in one place: each side as
    as_u32_array converts it, then ValueError when the lengths differ.
    """
    w = as_u32_array(irqs, "irqs")
    lv = as_u32_array(levels, "levels")
    if w.shape[0] != lv.shape[0]:
        raise ValueError(f"irqs and levels differ in length ({w.shape[0]} != {lv.shape[0]})")
    return w, lv


def check_irs_host(max_vpes, ipa_bits):
    """check_irs_host(max_vpes, ipa_bits) -> None: the one rule for the host's IRS inputs
    (gic5.Host and VmCore both apply it): max_vpes is 2 ** (IRS_IDR4.VPE_ID_BITS + 1), a power
    of two 2..65536; ipa_bits an arm64 guest IPA size, 32..52. ValueError otherwise."""
    if not 2 <= max_vpes <= 65536 or max_vpes & (max_vpes - 1):
        raise ValueError(f"max_vpes must be a power of two 2..65536 (2 ** (IRS_IDR4."
                         f"VPE_ID_BITS + 1)), not {max_vpes}")
    if not 32 <= ipa_bits <= 52:
        raise ValueError(f"ipa_bits must be 32..52 (an arm64 guest IPA size), not {ipa_bits}")


def check_irs_regs_host(irs_pri_bits, ist_id_bits, min_lpi_id_bits, pa_range):
    """check_irs_regs_host(irs_pri_bits, ist_id_bits, min_lpi_id_bits, pa_range) -> None: the
    one rule for the host IRS's register inputs (gic5.Host and VmCore apply it): the IRS's
    priority bits 1..5, IRS_IDR2.ID_BITS 14..24 (the guest sees min(16, it)),
    IRS_IDR2.MIN_LPI_ID_BITS 10..min(ist_id_bits, 15) (a 4-bit field), the
    sanitised ID_AA64MMFR0_EL1.PARange code 0..7. ValueError otherwise."""
    if not 1 <= irs_pri_bits <= 5:
        raise ValueError(f"irs_pri_bits must be 1..5 (the host IRS's priority bits), "
                         f"not {irs_pri_bits}")
    if not 14 <= ist_id_bits <= 24:
        raise ValueError(f"ist_id_bits must be 14..24 (the host IRS_IDR2.ID_BITS), "
                         f"not {ist_id_bits}")
    if not 10 <= min_lpi_id_bits <= min(ist_id_bits, 15):
        raise ValueError(f"min_lpi_id_bits must be 10..min(ist_id_bits, 15) = "
                         f"{min(ist_id_bits, 15)} (the host IRS_IDR2.MIN_LPI_ID_BITS, a 4-bit "
                         f"field), not {min_lpi_id_bits}")
    if not 0 <= pa_range <= 7:
        raise ValueError(f"pa_range must be 0..7 (an ID_AA64MMFR0_EL1.PARange code), "
                         f"not {pa_range}")


cdef inline tuple words(mask128 m):
    return (m.w[0], m.w[1])


cdef inline bint is_v5_ppi(const vm_t* vm, uint32_t intid) noexcept nogil:
    # irq_is_ppi() for a V5 VM: type field 1 and an index below VGIC_V5_NR_PRIVATE_IRQS.
    return (intid >> 29) == 1 and (intid & 0xffffff) < vm.nr_ppis


cdef extern from *:
    """
    #define GIC5_VGIC_ADDR_UNDEF (~0ULL)
    """
    const uint64_t VGIC_ADDR_UNDEF "GIC5_VGIC_ADDR_UNDEF"   # an address never set


cdef inline uint64_t vcpu_mpidr_aff(uint32_t vcpu_id) noexcept nogil:
    # reset_mpidr (sys_regs.c): Aff0 = vcpu_id bits 3:0, Aff1 = bits 11:4, Aff2 = bits 19:12,
    # as MPIDR_EL1 bit positions (Aff0 7:0, Aff1 15:8, Aff2 23:16; Aff3 39:32 stays 0).
    return (vcpu_id & 0xf) | (((vcpu_id >> 4) & 0xff) << 8) | (((vcpu_id >> 12) & 0xff) << 16)


cdef inline vcpu_t* vcpu_by_sysreg_attr(vm_t* vm, uint64_t attr) noexcept nogil:
    # vgic_v5_parse_attr: attr bits 63:32 (KVM_DEV_ARM_VGIC_V3_MPIDR_MASK) as an MPIDR by
    # VGIC_TO_MPIDR (Aff0 39:32, Aff1 47:40, Aff2 55:48, Aff3 63:56), looked up with
    # kvm_mpidr_to_vcpu (affinity fields compared); NULL when no vCPU has it.
    cdef uint64_t a = attr >> 32
    cdef uint64_t mpidr = (a & 0xffffff) | ((a >> 24) << 32)
    cdef int i
    for i in range(vm.nr_vcpus):
        if vcpu_mpidr_aff(vm.vcpus[i].vcpu_id) == mpidr:
            return vm.vcpus[i]
    return NULL


cdef int first_run(vm_t* vm, vcpu_t* v) noexcept nogil:
    # kvm_arch_vcpu_run_pid_change, spec 4.5 / 10.2.
    if vm.has_device and not vm.vgic_ready:
        # kvm_vgic_map_resources (vgic-init.c, all profiles), which returns 0 at once once
        # dist->ready is set: the checks below run until one vCPU's first run gets past them,
        # even when that run then fails later (the PMU: the VM stays alive, not "ran"), and
        # never again for the VM. vgic_v5_map_resources answers EBUSY before CTRL_INIT; on
        # 7.4 (e3db95b1bc28 "Register the IRS IODEV") an IRS base never set is ENXIO. Either
        # failure marks the VM dead (kvm_vm_dead): every later ioctl is EIO.
        if not vm.initialised or (vm.prof.irs_uapi and vm.irs_base == VGIC_ADDR_UNDEF):
            vm.dead = 1
            update_ppi_fast(vm)
            return -EBUSY if not vm.initialised else -ENXIO
        if vm.prof.irs_uapi and vm.lpi_ist_restore_pending:
            # 7.4 vgic_v5_map_resources: IRS_REGS restored a valid IST_BASER but no IST SET
            # followed (irs->lpi_ist_restore_pending): EINVAL, and the VM is dead. Only at the
            # map: a restore made pending after it (a first run failed at the PMU, then
            # IRS_REGS, still writable as the VM has not run) is not looked at again.
            vm.dead = 1
            update_ppi_fast(vm)
            return -EINVAL
        vm.vgic_ready = 1
    if vm.has_device:
        if not v.timers_enabled:
            # timer_irqs_are_valid: skipped once frozen; else vtimer and ptimer (the only
            # timers without NV) must carry their architected V5 INTIDs.
            if not vm.timer_ppis_frozen:
                if (vm.timer_ppi[TIMER_VTIMER] != PPI_INTID_BASE + PPI_CNTV
                        or vm.timer_ppi[TIMER_PTIMER] != PPI_INTID_BASE + PPI_CNTP):
                    return -EINVAL
                vm.timer_ppis_frozen = 1
            set_bit(PPI_CNTV, &v.owned)
            set_bit(PPI_CNTP, &v.owned)
            set_bit(PPI_CNTV, &v.hw)    # VHE host: both are direct timers, DVI
            set_bit(PPI_CNTP, &v.hw)
            v.timers_enabled = 1
            apply_recorded_timer(vm, v, TIMER_VTIMER)
            apply_recorded_timer(vm, v, TIMER_PTIMER)
    if v.pmu_feature and not v.pmu_created:
        return -EINVAL  # kvm_arm_pmu_v3_enable; the VM stays alive
    if vm.has_device:
        finalize(vm, v)
    v.has_run = 1
    vm.ran_once = 1
    return 0


cdef class VmCore:
    """VmCore(profile="final", host_pmu=True, impl0=0x5C800008, impl1=0)

    The compiled state of one VM; gic5.Vm is its Python subclass. The public methods are the
    VM-level hot paths (irq_line, irq_line_batch) and the VM's masks; the underscore methods
    are the per-vCPU and configuration operations the front end calls with its validated
    arguments. Every one answers like the KVM ioctl it stands for (OSError with the kernel's
    errno on failure).
    """

    def __cinit__(self, *args, **kwargs):
        # Always a valid VM (profile final, default host) even before __init__ runs, so no
        # method can see a zeroed profile; __init__ (or a subclass's) picks the real one.
        self._configure("final", True, 0x5C800008, 0, 512, True, 40, False)

    def __init__(self, str profile="final", bint host_pmu=True,
                 uint64_t impl0=0x5C800008, uint64_t impl1=0, unsigned int max_vpes=512,
                 bint lpi_domain=True, unsigned int ipa_bits=40, bint gcie_legacy=False):
        if self.vm.nr_vcpus or self.vm.has_device:
            raise RuntimeError("a VmCore's profile and host are fixed once it has state")
        check_irs_host(max_vpes, ipa_bits)
        self._configure(profile, host_pmu, impl0, impl1, max_vpes, lpi_domain, ipa_bits,
                        gcie_legacy)

    cdef int _configure(self, str profile, bint host_pmu, uint64_t impl0, uint64_t impl1,
                        unsigned int max_vpes, bint lpi_domain, unsigned int ipa_bits,
                        bint gcie_legacy) except -1:
        cdef int i
        profile_load(profile, &self.vm.prof)
        # The host's vGIC probe (vgic_v5_probe, 7.4): max_gicv5_vcpus = min(IRS max VPEs,
        # VGIC_V5_MAX_CPUS); no host LPI domain: neither the V5 nor the GICv3-legacy device is
        # registered, so no vGIC limits the VM (KVM_MAX_VCPUS); with the legacy device the
        # VM starts at VGIC_V3_MAX_CPUS and KVM_CREATE_DEVICE(V5) lowers it. The other
        # profiles: V5 always registered, 512 vCPUs.
        self.vm.max_gicv5_vcpus = MAX_VCPUS
        self.vm.max_vcpus = MAX_VCPUS
        self.vm.v5_registered = 1
        if self.vm.prof.model_vcpu_limits:
            self.vm.max_gicv5_vcpus = max_vpes if max_vpes < MAX_VCPUS else MAX_VCPUS
            self.vm.v5_registered = lpi_domain
            if lpi_domain and not gcie_legacy:
                self.vm.max_vcpus = self.vm.max_gicv5_vcpus
        self.vm.ipa_bits = ipa_bits
        self.vm.host_irs_pri_bits = 5
        self.vm.host_ist_id_bits = 16
        self.vm.host_min_lpi_id_bits = 14
        self.vm.host_pa_range = 5
        self.vm.irs_base = VGIC_ADDR_UNDEF
        self.vm.nr_spis = 0
        self._profile = profile
        self.vm.nr_ppis = self.vm.prof.nr_ppis
        self.vm.impl = bitmap_and(mask_make(impl0, impl1), bitmap_fill(self.vm.nr_ppis))
        self.vm.edge_cfg = bit_mask(SW_PPI)
        # v2 has no mask gate: every PPI below NR passes KVM_IRQ_LINE (the injection itself
        # then answers EBUSY before INIT). v3+ gate on userspace_ppis, empty until INIT.
        self.vm.irq_line_gate = bitmap_zero() if self.vm.prof.gate_by_umask \
            else bitmap_fill(self.vm.nr_ppis)
        self.vm.host_pmu = host_pmu
        for i in range(IRQ_WORD_VCPU_IDS):
            self.vm.id_to_index[i] = NO_VCPU
        for i in range(4):
            self.vm.timer_ppi[i] = TIMER_DEFAULT[i]
        return 0

    def __dealloc__(self):
        cdef int i
        lpi_ist_free(&self.vm)
        free(self.vm.spi_ready)
        self.vm.spi_ready = NULL
        self.vm.spi_ready_ids = 0
        for i in range(self.vm.nr_vcpus):
            free(self.vm.vcpus[i])
            self.vm.vcpus[i] = NULL
        self.vm.nr_vcpus = 0

    cdef vcpu_t* vcpu_at(self, int index) except NULL:
        if index < 0 or index >= self.vm.nr_vcpus:
            raise IndexError(f"no vCPU with index {index}")
        return self.vm.vcpus[index]

    def __repr__(self):
        return (f"<VmCore profile={self._profile} vcpus={self.vm.nr_vcpus} "
                f"device={bool(self.vm.has_device)} initialised={bool(self.vm.initialised)} "
                f"dead={bool(self.vm.dead)}>")

    # --- properties the front end reads ----------------------------------------------------

    @property
    def profile(self):
        """The revision modelled: "v2", "v3", "final" or "7.4"."""
        return self._profile

    @property
    def nr_ppis(self):
        """VGIC_V5_NR_PRIVATE_IRQS of the profile: 64 on final and 7.4, 128 on v2 and v3."""
        return self.vm.nr_ppis

    @property
    def nr_vcpus(self):
        """The number of vCPUs created so far."""
        return self.vm.nr_vcpus

    @property
    def has_device(self):
        """A V5 VGIC exists (irqchip_in_kernel)."""
        return bool(self.vm.has_device)

    @property
    def initialised(self):
        """KVM_DEV_ARM_VGIC_CTRL_INIT succeeded (vgic_initialized)."""
        return bool(self.vm.initialised)

    @property
    def dead(self):
        """A first run failed to map resources: every VM, device and vCPU call answers EIO."""
        return bool(self.vm.dead)

    @property
    def impl_ppis(self):
        """The host's implemented PPIs cut to nr_ppis, as (word0, word1)."""
        return words(self.vm.impl)

    def _alive(self):
        """_alive() -> None: EIO when the VM is dead (every VM, device and vCPU ioctl)."""
        if self.vm.dead:
            check(-EIO)

    # --- KVM_CREATE_VCPU --------------------------------------------------------------------

    def _create_vcpu(self, unsigned long vcpu_id, bint el2=False, bint pmu=False):
        """_create_vcpu(vcpu_id, el2, pmu) -> index (creation order)."""
        cdef int rc = 0, index = -1
        cdef vcpu_t* v = NULL
        gic5_lock(&self.vm.lock)
        if self.vm.dead:
            rc = -EIO
        elif vcpu_id >= MAX_VCPUS or self.vm.nr_vcpus >= self.vm.max_vcpus:
            rc = -EINVAL  # KVM_MAX_VCPU_IDS; created_vcpus >= kvm->max_vcpus
        elif self.vm.initialised:
            rc = -EBUSY  # kvm_arch_vcpu_precreate: VGIC already initialised
        elif vcpu_id >= <unsigned long>self.vm.max_vcpus:
            rc = -EINVAL  # kvm_arch_vcpu_precreate: id >= kvm->max_vcpus (7.4: V5's limit)
        elif self.vm.id_to_index[vcpu_id] != NO_VCPU:
            rc = -EEXIST
        elif pmu and not self.vm.host_pmu:
            rc = -EINVAL  # KVM_ARM_VCPU_INIT refuses an unsupported feature
        else:
            v = <vcpu_t*>calloc(1, vcpu_alloc_size(self.vm.nr_ppis))
            if v == NULL:
                rc = -12  # ENOMEM
            else:
                v.vcpu_id = <uint32_t>vcpu_id
                v.el2 = el2
                v.pmu_feature = pmu
                index = self.vm.nr_vcpus
                self.vm.vcpus[index] = v
                self.vm.id_to_index[vcpu_id] = index
                self.vm.nr_vcpus += 1
        gic5_unlock(&self.vm.lock)
        check(rc)
        return index

    def _vcpu_id(self, int index):
        return self.vcpu_at(index).vcpu_id

    # --- KVM_CREATE_DEVICE and the device attributes that act on state ----------------------

    def _create_device(self, uint32_t dev_type, uint32_t flags=0):
        """_create_device(type, flags) -> True if created, False in test mode."""
        cdef int rc = 0, i
        cdef bint created = False
        gic5_lock(&self.vm.lock)
        if self.vm.dead:
            rc = -EIO
        elif dev_type != KVM_DEV_TYPE_ARM_VGIC_V5 or not self.vm.v5_registered:
            rc = -ENODEV  # no ops registered for the type (7.4: V5 needs a host LPI domain)
        elif flags & KVM_CREATE_DEVICE_TEST:
            rc = 0
        else:
            for i in range(self.vm.nr_vcpus):
                if self.vm.vcpus[i].running:
                    rc = -EBUSY  # mutex_trylock of a running vCPU fails
            if rc == 0:
                if self.vm.has_device:
                    rc = -EEXIST
                elif self.vm.ran_once:
                    rc = -EBUSY
                elif self.vm.prof.model_vcpu_limits:
                    rc = self.v5_vcpu_limits()
                if rc == 0 and not self.vm.has_device:
                    self.vm.has_device = 1
                    update_ppi_fast(&self.vm)
                    for i in range(4):  # kvm_timer_init_vm: v5 encoding
                        self.vm.timer_ppi[i] = PPI_INTID_BASE + TIMER_DEFAULT[i]
                    created = True
        gic5_unlock(&self.vm.lock)
        check(rc)
        return created

    cdef int v5_vcpu_limits(self) noexcept nogil:
        # kvm_vgic_create for V5 on 7.4 (21fd40005fb3 "Enforce model-specific vCPU limits"):
        # kvm->max_vcpus := max_gicv5_vcpus, kept even when a check below fails; an existing
        # vCPU id at or above it, or more vCPUs than it, is E2BIG.
        cdef int i
        self.vm.max_vcpus = self.vm.max_gicv5_vcpus
        for i in range(self.vm.nr_vcpus):
            if self.vm.vcpus[i].vcpu_id >= <uint32_t>self.vm.max_vcpus:
                return -E2BIG
        if self.vm.nr_vcpus > self.vm.max_vcpus:
            return -E2BIG
        return 0

    def _device_init(self):
        """_device_init() -> None: KVM_DEV_ARM_VGIC_CTRL_INIT (vgic_init for V5)."""
        cdef int rc = 0, i
        gic5_lock(&self.vm.lock)
        if self.vm.dead:
            rc = -EIO
        elif not self.vm.initialised and self.vm.prof.irs_uapi:
            # 7.4 vgic_init: the default SPI count when NR_IRQS was never set, then
            # vgic_v5_init's first check: no online vCPU is ENODEV (retryable).
            if self.vm.nr_spis == 0:
                self.vm.nr_spis = NR_SPIS_DEFAULT
            if self.vm.prof.init_needs_vcpus and self.vm.nr_vcpus == 0:
                rc = -ENODEV
        if rc == 0 and not self.vm.dead and not self.vm.initialised:
            for i in range(self.vm.nr_vcpus):
                if self.vm.vcpus[i].el2:
                    rc = -EINVAL  # nested virtualisation is refused
            if rc == 0 and self.vm.prof.irs_uapi:
                rc = irs_init(&self.vm)  # kvm_vgic_v5_irs_init: the SPI IST, the registers
            if rc == 0:
                self.vm.userspace_ppis = userspace_mask(&self.vm)
                if self.vm.prof.gate_by_umask:
                    self.vm.irq_line_gate = self.vm.userspace_ppis
                self.vm.initialised = 1
                update_ppi_fast(&self.vm)
        gic5_unlock(&self.vm.lock)
        check(rc)

    def userspace_ppis(self):
        """userspace_ppis() -> (word0, word1) as USERSPACE_PPIS copies them out."""
        cdef mask128 m
        gic5_lock(&self.vm.lock)
        m = self.vm.userspace_ppis
        gic5_unlock(&self.vm.lock)
        return words(m)

    def exposed_ppis(self):
        """exposed_ppis() -> (word0, word1); v2: vCPU index 0's per-vCPU set."""
        cdef mask128 m = bitmap_zero()
        gic5_lock(&self.vm.lock)
        if self.vm.nr_vcpus > 0:
            m = exposed_of(&self.vm, self.vm.vcpus[0], SHAPE_ANY)
        else:
            m = self.vm.exposed
        gic5_unlock(&self.vm.lock)
        return words(m)

    # --- the IRS-era device attributes (7.4) ---------------------------------------------------
    # The front end calls these only on a profile with irs_uapi (elsewhere the groups answer
    # ENXIO before reaching the core). ``readable`` False stands for a user pointer that
    # faults when read, so that EFAULT lands where the kernel's get_user would put it.

    def _irs_addr_set(self, uint64_t attr, bint readable, uint64_t addr):
        """_irs_addr_set(attr, readable, addr) -> None: GRP_ADDR SET (kvm_vgic_addr, write)."""
        cdef int rc = 0
        gic5_lock(&self.vm.lock)
        if self.vm.dead:
            rc = -EIO
        elif not readable:
            rc = -EFAULT  # vgic_set_common_attr reads the value before looking at the attr
        elif attr != KVM_VGIC_V5_ADDR_TYPE_IRS:
            rc = -ENXIO   # kvm_vgic_addr's ENODEV for a type V5 does not have, as ENXIO
        elif self.vm.irs_base != VGIC_ADDR_UNDEF:
            rc = -EEXIST  # vgic_check_iorange: already set, before any check of the value
        elif (addr & (SZ_64K - 1)) != 0:
            rc = -EINVAL  # not 64 KiB aligned
        elif addr + KVM_VGIC_V5_IRS_SIZE < addr:
            rc = -EINVAL  # the region wraps
        elif (addr >> self.vm.ipa_bits) != 0 \
                or addr + KVM_VGIC_V5_IRS_SIZE > ((<uint64_t>1) << self.vm.ipa_bits):
            rc = -E2BIG   # beyond kvm_phys_mask, or the region does not fit in the IPA space
        else:
            self.vm.irs_base = addr
        gic5_unlock(&self.vm.lock)
        check(rc)

    def _irs_addr_get(self, uint64_t attr, bint readable=True):
        """_irs_addr_get(attr, readable) -> the IRS base (all-ones until set): GRP_ADDR GET,
        before the copy-out. ``readable`` matters for attr 5 only: kvm_vgic_addr reads a
        KVM_VGIC_V3_ADDR_TYPE_REDIST_REGION GET's index from the buffer first (EFAULT)."""
        cdef int rc = 0
        cdef uint64_t value = 0
        gic5_lock(&self.vm.lock)
        if self.vm.dead:
            rc = -EIO
        elif attr == KVM_VGIC_V3_ADDR_TYPE_REDIST_REGION and not readable:
            rc = -EFAULT
        elif attr != KVM_VGIC_V5_ADDR_TYPE_IRS:
            rc = -ENXIO
        else:
            value = self.vm.irs_base
        gic5_unlock(&self.vm.lock)
        check(rc)
        return value

    def _nr_irqs_set(self, bint readable, uint32_t value):
        """_nr_irqs_set(readable, value) -> None: GRP_NR_IRQS SET, the SPI count (V5)."""
        cdef int rc = 0
        gic5_lock(&self.vm.lock)
        if self.vm.dead:
            rc = -EIO
        elif not readable:
            rc = -EFAULT  # get_user comes first
        elif value < NR_SPIS_DEFAULT or value > NR_SPIS_MAX or value % 32 != 0:
            rc = -EINVAL  # VGIC_V5_DEFAULT_NR_SPIS..VGIC_V5_MAX_NR_SPIS, multiples of 32
        elif self.vm.initialised or self.vm.nr_spis != 0:
            rc = -EBUSY   # settable once, and only before CTRL_INIT
        else:
            self.vm.nr_spis = value
        gic5_unlock(&self.vm.lock)
        check(rc)

    @property
    def nr_spis(self):
        """dist->nr_spis: 0 until NR_IRQS is set or CTRL_INIT applies the default (7.4: 32)."""
        return self.vm.nr_spis

    @property
    def max_vcpus(self):
        """kvm->max_vcpus (KVM_CAP_MAX_VCPUS): 512, or on 7.4 the V5 limit where it applies."""
        return self.vm.max_vcpus

    cdef int sysreg_access(self, uint64_t attr, bint write, bint readable,
                           uint64_t* val) noexcept nogil:
        # vgic_v5_attr_regs_access for CPU_SYSREGS, in the kernel's order: the MPIDR names no
        # vCPU (vgic_v5_parse_attr) EINVAL; kvm_trylock_all_vcpus fails (a vCPU is inside
        # KVM_RUN) EBUSY; not initialised EBUSY; a write once any vCPU ran EBUSY; then the
        # generic sysreg helper: a SET reads the user value (EFAULT) before the table lookup,
        # an unknown register is ENOENT. Caller holds vm.lock.
        cdef vcpu_t* v
        cdef int i, reg
        cdef unsigned int n
        if not self.vm.prof.irs_uapi:
            # The group is 7.4's (the front end answers ENXIO before the core); refused here
            # too, so that prio_raw is never set on a VM without irs_uapi (the storm's final
            # shape does not read it: ppi.pxd flush).
            return -ENXIO
        if self.vm.dead:
            return -EIO
        v = vcpu_by_sysreg_attr(&self.vm, attr)
        if v == NULL:
            return -EINVAL
        for i in range(self.vm.nr_vcpus):
            if self.vm.vcpus[i].running:
                return -EBUSY
        if not self.vm.initialised:
            return -EBUSY
        if write and self.vm.ran_once:
            return -EBUSY
        if write and not readable:
            return -EFAULT
        reg = sysreg_lookup(<unsigned int>(attr & 0xffff), &n)
        if reg == SR_NONE:
            return -ENOENT
        if write:
            sysreg_write(&self.vm, v, reg, n, val[0])
        else:
            val[0] = sysreg_read(&self.vm, v, reg, n)
        return 0

    def _sysreg_has(self, uint64_t attr):
        """_sysreg_has(attr) -> None: HAS of CPU_SYSREGS (vgic_v5_has_cpu_sysregs_attr)."""
        cdef int rc = 0
        cdef unsigned int n
        gic5_lock(&self.vm.lock)
        if self.vm.dead:
            rc = -EIO
        elif vcpu_by_sysreg_attr(&self.vm, attr) == NULL:
            rc = -EINVAL
        elif sysreg_lookup(<unsigned int>(attr & 0xffff), &n) == SR_NONE:
            rc = -ENXIO
        gic5_unlock(&self.vm.lock)
        check(rc)

    def _sysreg_get(self, uint64_t attr):
        """_sysreg_get(attr) -> value: GET of CPU_SYSREGS, before the copy-out."""
        cdef uint64_t value = 0
        cdef int rc
        gic5_lock(&self.vm.lock)
        rc = self.sysreg_access(attr, False, True, &value)
        gic5_unlock(&self.vm.lock)
        check(rc)
        return value

    def _sysreg_set(self, uint64_t attr, bint readable, uint64_t value):
        """_sysreg_set(attr, readable, value) -> None: SET of CPU_SYSREGS."""
        cdef int rc
        gic5_lock(&self.vm.lock)
        rc = self.sysreg_access(attr, True, readable, &value)
        gic5_unlock(&self.vm.lock)
        check(rc)

    cdef int spi_index(self, object spi) except -1:
        need_int(spi, "spi")
        if spi < 0 or spi >= self.vm.nr_spis:
            raise ValueError(f"SPI {spi} does not exist: this VM has {self.vm.nr_spis} SPIs "
                             "(NR_IRQS, or the default at CTRL_INIT on 7.4)")
        return spi

    cdef tuple spi_bits(self, object spi):
        # (line_level, pending_latch, LEVEL config) of SPI spi, under vm.lock.
        cdef int n = self.spi_index(spi)
        cdef uint64_t bit = (<uint64_t>1) << (n & 63)
        cdef bint line, latch, cfg
        gic5_lock(&self.vm.lock)
        line = (self.vm.spi_level[n >> 6] & bit) != 0
        latch = (self.vm.spi_latch[n >> 6] & bit) != 0
        cfg = (self.vm.spi_cfg_level[n >> 6] & bit) != 0
        gic5_unlock(&self.vm.lock)
        return (line, latch, cfg)

    def spi_state(self, spi):
        """spi_state(spi) -> (line_level, pending_latch): KVM's vgic_irq of SPI ``spi`` (7.4;
        ValueError for an SPI the VM does not have, TypeError for a non-int)."""
        line, latch, _ = self.spi_bits(spi)
        return (line, latch)

    def spi_pending(self, spi):
        """spi_pending(spi) -> bool: KVM holds SPI ``spi`` pending (irq_is_pending: the latch
        for an EDGE SPI, KVM's default, latch or line for a LEVEL one). 7.4; ValueError for an
        SPI the VM does not have."""
        line, latch, cfg = self.spi_bits(spi)
        return bool(latch or (cfg and line))

    # --- the virtual IRS (7.4): inspection -------------------------------------------------------

    def _set_irs_host(self, unsigned int irs_pri_bits, unsigned int ist_id_bits,
                      unsigned int min_lpi_id_bits, unsigned int pa_range):
        """_set_irs_host(irs_pri_bits, ist_id_bits, min_lpi_id_bits, pa_range) -> None: the
        host IRS's inputs (check_irs_host's rules), before the VM has any state."""
        if self.vm.nr_vcpus or self.vm.has_device:
            raise RuntimeError("a VmCore's host is fixed once it has state")
        check_irs_regs_host(irs_pri_bits, ist_id_bits, min_lpi_id_bits, pa_range)
        self.vm.host_irs_pri_bits = irs_pri_bits
        self.vm.host_ist_id_bits = ist_id_bits
        self.vm.host_min_lpi_id_bits = min_lpi_id_bits
        self.vm.host_pa_range = pa_range

    def _set_irs_policy(self, policy):
        """_set_irs_policy(policy) -> None: override the profile's IRS policy switches
        (gic5core.IRS_POLICY names -> bools) for this VM, before it has any state."""
        if self.vm.nr_vcpus or self.vm.has_device:
            raise RuntimeError("a VmCore's host is fixed once it has state")
        for name, value in policy.items():
            if name not in _IRS_POLICY:
                raise ValueError(f"unknown IRS policy {name!r}; known: {', '.join(_IRS_POLICY)}")
            if not isinstance(value, bool):
                raise TypeError(f"IRS policy {name} must be a bool, not {type(value).__name__}")
        for name, value in policy.items():
            if name == "ppi_wins_irs_tie":
                self.vm.prof.ppi_wins_irs_tie = value
            elif name == "irs_tie_lowest_id":
                self.vm.prof.irs_tie_lowest_id = value
            elif name == "vdpend_updates_hm":
                self.vm.prof.vdpend_updates_hm = value
            elif name == "db_fires_if_pending":
                self.vm.prof.db_fires_if_pending = value
            else:
                self.vm.prof.spi_ids_pow2 = value

    def _irs_policy(self):
        """_irs_policy() -> dict: this VM's IRS policy switches."""
        return {"ppi_wins_irs_tie": bool(self.vm.prof.ppi_wins_irs_tie),
                "irs_tie_lowest_id": bool(self.vm.prof.irs_tie_lowest_id),
                "vdpend_updates_hm": bool(self.vm.prof.vdpend_updates_hm),
                "db_fires_if_pending": bool(self.vm.prof.db_fires_if_pending),
                "spi_ids_pow2": bool(self.vm.prof.spi_ids_pow2)}

    @property
    def irs_enabled(self):
        """kvm->arch.vgic.enabled: the guest's IRS_CR0.IRSEN (7.4; False elsewhere)."""
        return bool(self.vm.irs_enabled)

    @property
    def spi_ist_entries(self):
        """Entries of the virtual SPI IST: 2 ** spi_id_bits after CTRL_INIT on 7.4, else 0."""
        return self.vm.ist_entries

    def spi_iste(self, spi):
        """spi_iste(spi) -> int: the raw 32-bit ISTE of SPI ``spi`` in the virtual SPI IST
        (PENDING 0, ACTIVE 1, HM 2, ENABLE 3, IRM 4, HWU 10:9, PRIORITY 15:11, IAFFID 31:16).
        ValueError outside 0 .. spi_ist_entries - 1 (no table before CTRL_INIT or without
        the IRS)."""
        need_int(spi, "spi")
        if spi < 0 or spi >= self.vm.ist_entries:
            raise ValueError(f"SPI {spi} has no ISTE: the virtual SPI IST has "
                             f"{self.vm.ist_entries} entries (2 ** spi_id_bits after CTRL_INIT "
                             "on 7.4)")
        cdef uint32_t w
        gic5_lock(&self.vm.lock)
        w = self.vm.ist[<unsigned int>spi]
        gic5_unlock(&self.vm.lock)
        return w

    def spi_level_config(self, spi):
        """spi_level_config(spi) -> bool: KVM's config of SPI ``spi`` is LEVEL (the guest's
        IRS_SPI_CFGR.TM, or the restored HM); EDGE, KVM's default, is False."""
        return self.spi_bits(spi)[2]

    def _contextr(self, int index):
        """_contextr(index) -> ICH_CONTEXTR_EL2 as vgic_v5_load / vgic_v5_put last wrote it."""
        return self.vcpu_at(index).contextr

    def _db_fired(self, int index):
        """_db_fired(index) -> bool: the vCPU's VPE doorbell fired since it was put."""
        return bool(self.vcpu_at(index).db_fired)

    # --- KVM_DEV_ARM_VGIC_GRP_IRS_REGS (7.4) -------------------------------------------------
    # vgic_v5_attr_regs_access / vgic_v5_has_attr_regs (vgic-kvm-device.c @ 2bc87b583a30),
    # vgic_v5_irs_attr_regs_access (vgic-irs-v5.c @ 2dfb5d4fa408). Every access runs as vCPU
    # index 0, which must exist (vgic_v5_parse_attr: EINVAL).

    cdef bint any_running(self) noexcept nogil:
        cdef int i
        for i in range(self.vm.nr_vcpus):
            if self.vm.vcpus[i].running:
                return True
        return False

    def _irs_regs_has(self, uint64_t attr):
        """_irs_regs_has(attr) -> None: HAS: EINVAL (no vCPU 0), ENXIO, EINVAL (alignment)."""
        cdef int rc = 0
        cdef unsigned int base = 0
        gic5_lock(&self.vm.lock)
        if self.vm.dead:
            rc = -EIO
        elif self.vm.nr_vcpus == 0:
            rc = -EINVAL
        else:
            rc = irs_uaccess_lookup(attr, &base)
        gic5_unlock(&self.vm.lock)
        check(rc)

    cdef int irs_regs_gate(self, bint write, bint readable) noexcept nogil:
        # The checks before the register (SET order; GET skips the read and the has-run).
        # The group is 7.4's: refused on other profiles here too (the front end answers ENXIO
        # first), so that irs_enabled is never set on a VM without irs_uapi (storm.pyx).
        if not self.vm.prof.irs_uapi:
            return -ENXIO
        if self.vm.dead:
            return -EIO
        if self.vm.nr_vcpus == 0:
            return -EINVAL
        if write and not readable:
            return -EFAULT          # get_user of the value
        if self.any_running():
            return -EBUSY           # kvm_trylock_all_vcpus
        if not self.vm.initialised:
            return -EBUSY
        if write and self.vm.ran_once:
            return -EBUSY           # vgic_v5_vm_has_run_once
        if self.vm.irs_base == VGIC_ADDR_UNDEF:
            return -ENXIO
        return 0

    def _irs_regs_get(self, uint64_t attr):
        """_irs_regs_get(attr) -> the u64 value, before the copy-out (put_user: EFAULT)."""
        cdef int rc
        cdef unsigned int base = 0
        cdef uint64_t value = 0
        gic5_lock(&self.vm.lock)
        rc = self.irs_regs_gate(False, True)
        if rc == 0:
            rc = irs_uaccess_lookup(attr, &base)
        if rc == 0:
            value = irs_uaccess_read(&self.vm, base)
        gic5_unlock(&self.vm.lock)
        check(rc)
        return value

    def _irs_regs_set(self, uint64_t attr, bint readable, uint64_t value):
        """_irs_regs_set(attr, readable, value) -> None: SET (the uaccess write rules)."""
        cdef int rc
        cdef unsigned int base = 0
        gic5_lock(&self.vm.lock)
        rc = self.irs_regs_gate(True, readable)
        if rc == 0:
            rc = irs_uaccess_lookup(attr, &base)
        if rc == 0:
            rc = irs_uaccess_write(&self.vm, base, value)
        gic5_unlock(&self.vm.lock)
        check(rc)

    # --- KVM_DEV_ARM_VGIC_GRP_IST (7.4) --------------------------------------------------------
    # vgic_v5_irs_save_ists / vgic_v5_irs_restore_ists (vgic-v5.c @ f9846846), the per-entry
    # helpers of vgic-v5-tables.c @ 066b1a17fd2d. The front end reads the descriptor and the
    # user buffers; these take what it found (null / readable flags, sizes, the words that
    # could be read) and answer in the kernel's order.

    cdef int lpi_id_bits(self, unsigned int* bits) noexcept nogil:
        # vgic_v5_irs_lpi_ist_id_bits: 0 with *bits = 0 for "no LPI IST" (BASER invalid),
        # EINVAL for a valid BASER with an invalid CFGR, else the guest's LPI_ID_BITS.
        bits[0] = 0
        if not (self.vm.ist_baser & 1):
            return 0
        if not ist_cfgr_valid(&self.vm):
            return -EINVAL
        bits[0] = self.vm.ist_cfgr & 0x1f
        return 0

    cdef int ist_validate(self, bint null, bint desc_ok, bint spi_null, uint64_t spi_size,
                          bint lpi_null, uint64_t lpi_size, unsigned int* bits) noexcept nogil:
        # vgic_v5_copy_ist_attr (NULL EINVAL, unreadable EFAULT), vgic_v5_validate_ist_attr:
        # the SPI buffer must be nr_spis words; the LPI one 2 ** bits words when the guest
        # describes an LPI IST, else absent (address and size 0).
        cdef int rc
        if null:
            return -EINVAL
        if not desc_ok:
            return -EFAULT
        if spi_null or spi_size != 4 * <uint64_t>self.vm.nr_spis:
            return -EINVAL
        rc = self.lpi_id_bits(bits)
        if rc:
            return rc
        if bits[0] == 0:
            if not lpi_null or lpi_size != 0:
                return -EINVAL
        elif lpi_null or lpi_size != 4 * ((<uint64_t>1) << bits[0]):
            return -EINVAL
        return 0

    def _ist_get(self, bint null, bint desc_ok, bint spi_null, uint64_t spi_size,
                 bint lpi_null, uint64_t lpi_size):
        """_ist_get(...) -> (spi_words, lpi_rc, lpi_words): IST GET (save). Raises for the
        checks before the copy; spi_words (numpy uint32, nr_spis raw ISTEs) go out first;
        then, when the guest describes an LPI IST, lpi_rc (0 / -ENXIO: the guest's BASER is
        valid but no host LPI IST exists) and its words."""
        cdef int rc = 0, lpi_rc = 0
        cdef unsigned int bits = 0, i
        cdef uint32_t nr, host_words
        cdef uint32_t[::1] sv
        cdef uint32_t[::1] lv
        while True:
            # The buffers are sized from the VM before the lock (no allocation under a spinlock:
            # it may run Python code that takes it) and the sizes checked under it; another
            # thread's NR_IRQS / CTRL_INIT / IST_BASER in between makes a new try, so one hold
            # does the checks and both copies.
            nr = self.vm.nr_spis
            host_words = self.vm.lpi_ist_words
            spi = np.zeros(nr, dtype=np.uint32)
            sv = spi
            lpi = np.zeros(host_words, dtype=np.uint32)
            lv = lpi
            gic5_lock(&self.vm.lock)
            if nr == self.vm.nr_spis and host_words == self.vm.lpi_ist_words:
                break
            gic5_unlock(&self.vm.lock)
        if self.vm.dead:
            rc = -EIO
        elif self.any_running() or not self.vm.initialised:
            rc = -EBUSY
        else:
            rc = self.ist_validate(null, desc_ok, spi_null, spi_size, lpi_null, lpi_size, &bits)
        if rc == 0:
            # The IRS save / quiesce (IRS_SAVE_VMR) always completes in the model: a pure read.
            for i in range(nr):
                sv[i] = self.vm.ist[i]
            if bits:
                if lpi_ist_exists(&self.vm) == 0 or host_words != (<uint32_t>1) << bits:
                    lpi_rc = -ENXIO  # vgic_v5_read_vm_ist_desc: guest valid, host none
                else:
                    for i in range(host_words):
                        lv[i] = self.vm.lpi_ist[i]
        gic5_unlock(&self.vm.lock)
        check(rc)
        if not bits or lpi_rc != 0:
            lpi = None
        return spi, lpi_rc, lpi

    def _ist_set(self, bint null, bint desc_ok, bint spi_null, uint64_t spi_size,
                 bint lpi_null, uint64_t lpi_size, spi_words, lpi_words):
        """_ist_set(..., spi_words, lpi_words) -> None: IST SET (restore). The word arrays
        hold what could be read from the user buffers (uint32, possibly shorter than needed:
        the entry after the last one faults with EFAULT, after the earlier ones were
        restored)."""
        cdef const uint32_t[::1] sw = np.ascontiguousarray(spi_words, dtype=np.uint32)
        cdef const uint32_t[::1] lw = np.ascontiguousarray(
            lpi_words if lpi_words is not None else (), dtype=np.uint32)
        cdef int rc = 0
        cdef unsigned int bits = 0, i, n_pend = 0
        cdef bint allocated = False
        cdef uint32_t w
        cdef uint32_t* pend = <uint32_t*>calloc(1024, sizeof(uint32_t))
        if pend == NULL:
            raise MemoryError()
        gic5_lock(&self.vm.lock)
        if self.vm.dead:
            rc = -EIO
        elif self.any_running() or not self.vm.initialised or self.vm.ran_once:
            rc = -EBUSY
        else:
            rc = self.ist_validate(null, desc_ok, spi_null, spi_size, lpi_null, lpi_size, &bits)
        if rc == 0 and lpi_ist_exists(&self.vm):
            rc = -EBUSY  # a host LPI IST already exists (after every buffer check)
        if rc == 0 and bits:
            # vgic_v5_restore_lpi_ist_alloc: from the restored IST_CFGR / IST_BASER.
            rc = lpi_ist_alloc(&self.vm, bits)
            allocated = rc == 0
        if rc == 0:
            for i in range(self.vm.nr_spis):
                if i >= <unsigned int>sw.shape[0]:
                    rc = -EFAULT
                    break
                if restore_spi_entry(&self.vm, i, sw[i]):
                    pend[n_pend] = i
                    n_pend += 1
        if rc == 0 and bits:
            for i in range(self.vm.lpi_ist_words):
                if i >= <unsigned int>lw.shape[0]:
                    rc = -EFAULT
                    break
                # No KVM-side per-LPI state: the host entry without PENDING and HWU; the
                # pending ones are replayed with VDPEND (here: PENDING kept).
                w = lw[i]
                self.vm.lpi_ist[i] = w & ~(<uint32_t>0x600)
        if rc == 0:
            # vgic_v5_restore_pending_irqs: VDPEND(intid, 1) for every tracked SPI.
            for i in range(n_pend):
                vdpend(&self.vm, pend[i], True)
            self.vm.lpi_ist_restore_pending = 0
        elif allocated:
            lpi_ist_free(&self.vm)  # vgic_v5_discard_pending_irqs and the LPI IST freed
        gic5_unlock(&self.vm.lock)
        free(pend)
        check(rc)

    # --- KVM_IRQ_LINE -------------------------------------------------------------------------

    def irq_line(self, irq, level):
        """irq_line(irq, level) -> None: KVM_IRQ_LINE; level is a __u32, nonzero asserts."""
        if type(irq) is not int or type(level) is not int:  # exact ints skip the slow check
            need_int(irq, "irq")
            need_int(level, "level")
        cdef uint32_t w = irq, lv = level
        cdef int rc
        gic5_lock(&self.vm.lock)
        rc = irq_line_one(&self.vm, w, lv)
        gic5_unlock(&self.vm.lock)
        if rc < 0:
            check(rc)

    def irq_line_batch(self, irqs, levels):
        """irq_line_batch(irqs, levels) -> numpy int32 array of 0 / -errno per element.

        Exactly ``irq_line`` applied to each (irq, level) pair in order, as one nogil C loop.
        Any 1-D integer arrays (or sequences) of equal length; each value must fit a __u32
        (ValueError otherwise); a nonzero level asserts. Failures do not raise: each element's
        code is in the result, as a loop of ioctls would collect them.
        """
        w_arr, lv_arr = batch_arrays(irqs, levels)
        cdef const uint32_t[::1] w = w_arr
        cdef const uint32_t[::1] lv = lv_arr
        out = np.empty(w.shape[0], dtype=np.int32)
        cdef int32_t[::1] rc = out
        cdef Py_ssize_t n = w.shape[0], start = 0, i, stop
        cdef mask128 gate
        cdef bint fast, shadow
        with nogil:
            while start < n:
                # One lock hold per chunk: amortised, yet other threads wait one chunk at most.
                # The VM's gate and flags are read once per hold (irq_line_gated): only
                # injections run inside it, and none of them writes those.
                stop = start + BATCH_CHUNK if start + BATCH_CHUNK < n else n
                gic5_lock(&self.vm.lock)
                gate = self.vm.irq_line_gate
                fast = self.vm.ppi_fast
                shadow = self.vm.prof.pendr_shadow
                if fast and not shadow:
                    # The common case (a live, initialised VM on final or 7.4), a loop of its
                    # own: the same function with both flags constant, so neither is tested.
                    for i in range(start, stop):
                        rc[i] = irq_line_gated(&self.vm, &gate, True, False, w[i], lv[i])
                else:
                    for i in range(start, stop):
                        rc[i] = irq_line_gated(&self.vm, &gate, fast, shadow, w[i], lv[i])
                gic5_unlock(&self.vm.lock)
                start = stop
        return out

    # --- vCPU attributes: timer -------------------------------------------------------------

    def _timer_get(self, int index, uint64_t attr):
        """_timer_get(index, attr) -> value (kvm_arm_timer_get_attr, before the copy-out)."""
        self.vcpu_at(index)  # IndexError for a bad index; the timer PPIs are VM-wide
        cdef int rc = 0
        cdef uint32_t value = 0
        gic5_lock(&self.vm.lock)
        if self.vm.dead:
            rc = -EIO
        elif attr > 3:
            rc = -ENXIO
        else:
            value = self.vm.timer_ppi[attr]
        gic5_unlock(&self.vm.lock)
        check(rc)
        return value

    def _timer_set(self, int index, uint64_t attr, bint readable, uint32_t value):
        """_timer_set(index, attr, readable, value) -> None (kvm_arm_timer_set_attr).

        ``readable`` False stands for a user pointer that faults when read.
        """
        self.vcpu_at(index)  # IndexError for a bad index; the timer PPIs are VM-wide
        cdef int rc = 0
        gic5_lock(&self.vm.lock)
        if self.vm.dead:
            rc = -EIO
        elif not self.vm.has_device:
            rc = -EINVAL
        elif not readable:
            rc = -EFAULT
        elif not is_v5_ppi(&self.vm, value):
            rc = -EINVAL
        elif self.vm.timer_ppis_frozen:
            rc = -EBUSY
        elif attr > 3:
            rc = -ENXIO
        else:
            self.vm.timer_ppi[attr] = value
        gic5_unlock(&self.vm.lock)
        check(rc)

    # --- vCPU attributes: PMU -----------------------------------------------------------------

    def _pmu_feature(self, int index):
        return bool(self.vcpu_at(index).pmu_feature)

    def _pmu_get(self, int index, uint64_t attr):
        """_pmu_get(index, attr) -> value (kvm_arm_pmu_v3_get_attr, before the copy-out)."""
        cdef vcpu_t* v = self.vcpu_at(index)
        cdef int rc = 0
        cdef uint32_t value = 0
        gic5_lock(&self.vm.lock)
        if self.vm.dead:
            rc = -EIO
        elif attr == KVM_ARM_VCPU_PMU_V3_IRQ:
            if not self.vm.has_device:
                rc = -EINVAL
            elif not v.pmu_feature:
                rc = -ENODEV
            elif v.pmu_irq == 0:
                rc = -ENXIO
            else:
                value = v.pmu_irq
        elif attr == KVM_ARM_VCPU_PMU_V3_INIT and not v.pmu_feature:
            rc = -ENODEV
        else:
            rc = -ENXIO
        gic5_unlock(&self.vm.lock)
        check(rc)
        return value

    def _pmu_set(self, int index, uint64_t attr, bint readable, uint32_t value):
        """_pmu_set(index, attr, readable, value) -> None (kvm_arm_pmu_v3_set_attr)."""
        cdef vcpu_t* v = self.vcpu_at(index)
        cdef int rc = 0
        gic5_lock(&self.vm.lock)
        if self.vm.dead:
            rc = -EIO
        elif not v.pmu_feature:
            rc = -ENODEV
        elif v.pmu_created:
            rc = -EBUSY
        elif attr == KVM_ARM_VCPU_PMU_V3_IRQ:
            if not self.vm.has_device:
                rc = -EINVAL
            elif not readable:
                rc = -EFAULT
            elif value != KVM_ARMV8_PMU_GICV5_IRQ:
                rc = -EINVAL  # on V5 the PMU overflow interrupt is PPI 23, nothing else
            elif v.pmu_irq != 0:
                rc = -EBUSY
            else:
                v.pmu_irq = value
        elif attr == KVM_ARM_VCPU_PMU_V3_INIT:
            if self.vm.has_device:
                if not self.vm.initialised:
                    rc = -ENODEV
                else:
                    if v.pmu_irq == 0:
                        v.pmu_irq = KVM_ARMV8_PMU_GICV5_IRQ  # V5 default instead of ENXIO
                    set_bit(PPI_PMUIRQ, &v.owned)           # kvm_vgic_set_owner, now
                    inject_ppi(&self.vm, v, PPI_PMUIRQ, v.pmu_level, OWNER_KERNEL)
            if rc == 0:
                v.pmu_created = 1
        else:
            rc = -ENXIO
        gic5_unlock(&self.vm.lock)
        check(rc)

    # --- in-kernel devices driving their lines ------------------------------------------------

    def _timer_line(self, int index, int timer, bint level):
        """_timer_line(index, timer, level): the vtimer (0) or ptimer (1) output line."""
        cdef vcpu_t* v = self.vcpu_at(index)
        if timer != TIMER_VTIMER and timer != TIMER_PTIMER:
            raise ValueError("only the vtimer and the ptimer exist without nested virtualisation")
        gic5_lock(&self.vm.lock)
        drive_timer_line(&self.vm, v, timer, level)
        gic5_unlock(&self.vm.lock)

    def _pmu_line(self, int index, bint level):
        """_pmu_line(index, level): the PMU overflow line of a PMU vCPU."""
        cdef vcpu_t* v = self.vcpu_at(index)
        if not v.pmu_feature:
            raise ValueError("this vCPU has no PMU (create it with pmu=True)")
        gic5_lock(&self.vm.lock)
        v.pmu_level = level
        if v.pmu_created and self.vm.has_device and not self.vm.dead:
            inject_ppi(&self.vm, v, PPI_PMUIRQ, level, OWNER_KERNEL)
        gic5_unlock(&self.vm.lock)

    # --- KVM_RUN ----------------------------------------------------------------------------------

    def _run_enter(self, int index):
        """_run_enter(index) -> None: KVM_RUN up to guest entry (first-run work, load, flush)."""
        cdef vcpu_t* v = self.vcpu_at(index)
        cdef int rc = 0
        gic5_lock(&self.vm.lock)
        if v.running:
            gic5_unlock(&self.vm.lock)
            raise RuntimeError("this vCPU is already inside run()")
        if self.vm.dead:
            rc = -EIO
        elif not v.has_run:
            rc = first_run(&self.vm, v)
        if rc == 0:
            v.running = 1
            if self.vm.has_device:
                vcpu_load(&self.vm, v, SHAPE_ANY)
                serve_requests(&self.vm, v, SHAPE_ANY)  # check_vcpu_requests before the entry
                flush(&self.vm, v, SHAPE_ANY)
        gic5_unlock(&self.vm.lock)
        check(rc)

    def _run_exit(self, int index):
        """_run_exit(index) -> None: the guest exits to userspace (fold, then put)."""
        cdef vcpu_t* v = self.vcpu_at(index)
        gic5_lock(&self.vm.lock)
        if v.running:
            if v.loaded:
                fold(&self.vm, v, SHAPE_ANY)
                vcpu_put(&self.vm, v, SHAPE_ANY)  # back to userspace: vcpu_put
            v.running = 0
        gic5_unlock(&self.vm.lock)

    def _is_running(self, int index):
        return bool(self.vcpu_at(index).running)

    # --- inspection: never raises for a valid index, even on a dead VM --------------------------

    def _pending_ppis(self, int index):
        """_pending_ppis(index) -> (word0, word1): KVM-pending for every PPI < NR."""
        cdef vcpu_t* v = self.vcpu_at(index)
        cdef mask128 m
        gic5_lock(&self.vm.lock)
        m = bitmap_and(kvm_pending(&self.vm, v), bitmap_fill(self.vm.nr_ppis))
        gic5_unlock(&self.vm.lock)
        return words(m)

    cdef tuple locked_mask(self, const mask128* m):
        # A consistent two-word snapshot of one of this VM's masks.
        cdef mask128 copy
        gic5_lock(&self.vm.lock)
        copy = m[0]
        gic5_unlock(&self.vm.lock)
        return words(copy)

    def _active_ppis(self, int index):
        """_active_ppis(index) -> (word0, word1): active as folded at the last exit."""
        return self.locked_mask(&self.vcpu_at(index).active)

    def _enabled_ppis(self, int index):
        """_enabled_ppis(index) -> (word0, word1): the guest's enables as KVM holds them."""
        return self.locked_mask(&self.vcpu_at(index).enabled)

    cdef bint locked_check(self, int index, bint block) except -1:
        # The block check (block) or its vGIC part alone, under vm.lock.
        cdef vcpu_t* v = self.vcpu_at(index)
        cdef bint r
        gic5_lock(&self.vm.lock)
        r = has_pending(&self.vm, v) if block else vgic_pending(&self.vm, v)
        gic5_unlock(&self.vm.lock)
        return r

    def _has_pending_irq(self, int index):
        """_has_pending_irq(index) -> bool: what kvm_vcpu_check_block would wake on (ppi.pxd)."""
        return self.locked_check(index, True)

    def _vgic_pending_irq(self, int index):
        """_vgic_pending_irq(index) -> bool: kvm_vgic_vcpu_pending_irq alone (ppi.pxd)."""
        return self.locked_check(index, False)

    def _cpu_lines(self, int index):
        """_cpu_lines(index) -> (irq, fiq): the KVM_ARM_IRQ_TYPE_CPU line levels."""
        cdef vcpu_t* v = self.vcpu_at(index)
        return (bool(v.cpu_lines & 1), bool(v.cpu_lines & 2))


def vcpu_state_size(str profile="final"):
    """vcpu_state_size(profile="final") -> bytes of C state create_vcpu allocates per vCPU.

    >>> vcpu_state_size("final") < vcpu_state_size("v2")
    True
    """
    cdef profile_t prof
    profile_load(profile, &prof)
    return vcpu_alloc_size(prof.nr_ppis)
