//! CPUID for each vCPU: what KVM supports, adjusted so that the guest sees
//! a consistent topology (one socket, `n` cores, one thread each), its own
//! APIC ID, and that it runs under a hypervisor.

use kvm_bindings::{CpuId, kvm_cpuid_entry2};

const LEAF_FEATURES: u32 = 0x1;
const LEAF_CACHE_PARAMS: u32 = 0x4;
const LEAF_PERF_MONITORING: u32 = 0xa;
const LEAF_EXT_TOPOLOGY: u32 = 0xb;
const LEAF_V2_EXT_TOPOLOGY: u32 = 0x1f;
const LEAF_AMD_ADDR_SIZES: u32 = 0x8000_0008;
const LEAF_AMD_EXT_APIC_ID: u32 = 0x8000_001e;

/// Leaf 1 ECX: running under a hypervisor.
const ECX_HYPERVISOR: u32 = 1 << 31;
/// Leaf 1 EDX: more than one logical processor per package.
const EDX_HTT: u32 = 1 << 28;
/// Leaf 1 ECX: the local APIC timer has TSC-deadline mode.
const ECX_TSC_DEADLINE: u32 = 1 << 24;
/// Extended topology level types (leaf 0xb/0x1f ECX[15:8]).
const LEVEL_TYPE_SMT: u32 = 1;
const LEVEL_TYPE_CORE: u32 = 2;

/// Leaf 1 ECX: Intel VMX.
const ECX_VMX: u32 = 1 << 5;
/// Leaf 0x8000_0001 ECX: AMD SVM.
const LEAF_AMD_FEATURES: u32 = 0x8000_0001;
const ECX_SVM: u32 = 1 << 2;
/// AMD's SVM revision and features (NPT, NRIP save, ...).
const LEAF_SVM_FEATURES: u32 = 0x8000_000a;

/// Whether `cpuid` offers SVM or VMX (KVM lists them among what it
/// supports only when its nested parameter is on).
pub fn offers_virtualization(cpuid: &CpuId) -> bool {
    cpuid.as_slice().iter().any(|entry| match entry.function {
        LEAF_FEATURES => entry.ecx & ECX_VMX != 0,
        LEAF_AMD_FEATURES => entry.ecx & ECX_SVM != 0,
        _ => false,
    })
}

/// Takes SVM and VMX out of `cpuid`: a guest without the instance's
/// nested virtualization option sees no way to run VMs of its own.
pub fn hide_virtualization(cpuid: &mut CpuId) {
    for entry in cpuid.as_mut_slice() {
        match entry.function {
            LEAF_FEATURES => entry.ecx &= !ECX_VMX,
            LEAF_AMD_FEATURES => entry.ecx &= !ECX_SVM,
            LEAF_SVM_FEATURES => {
                entry.eax = 0;
                entry.ebx = 0;
                entry.ecx = 0;
                entry.edx = 0;
            }
            _ => {}
        }
    }
}

/// Offers the TSC-deadline timer, which KVM emulates in-kernel but does
/// not list among what it supports (`KVM_CAP_TSC_DEADLINE_TIMER` says
/// whether it has it). Without it Linux drives the local APIC timer by
/// its initial count and first calibrates that timer against the PIT,
/// which costs boot time and about 300 more exits.
pub fn offer_tsc_deadline(cpuid: &mut CpuId) {
    for entry in cpuid.as_mut_slice() {
        if entry.function == LEAF_FEATURES {
            entry.ecx |= ECX_TSC_DEADLINE;
        }
    }
}

/// The processor brand string's leaves (16 bytes of text each).
const LEAVES_BRAND: std::ops::RangeInclusive<u32> = 0x8000_0002..=0x8000_0004;
/// The highest extended leaf.
const LEAF_EXT_MAX: u32 = 0x8000_0000;

/// Gives the guest the host processor's brand string, which KVM leaves
/// out of what it supports: without it Linux names the CPU by family and
/// model ("AMD 17/01"), where an EC2 instance sees its host's model name.
/// Leaves `cpuid` as it is on a host without one, or if it has no room.
pub fn pass_host_brand(cpuid: &mut CpuId) {
    use std::arch::x86_64::__cpuid;
    if __cpuid(LEAF_EXT_MAX).eax < *LEAVES_BRAND.end() {
        return;
    }
    for function in LEAVES_BRAND {
        let host = __cpuid(function);
        let entry = kvm_cpuid_entry2 {
            function,
            eax: host.eax,
            ebx: host.ebx,
            ecx: host.ecx,
            edx: host.edx,
            ..Default::default()
        };
        match cpuid
            .as_mut_slice()
            .iter_mut()
            .find(|e| e.function == function)
        {
            Some(existing) => *existing = entry,
            // The brand is a name only: a full table keeps what it has.
            None => {
                let _ = cpuid.push(entry);
            }
        }
    }
}

/// Bits needed to number `count` items (ceil(log2(count))).
fn id_bits(count: u32) -> u32 {
    count.max(1).next_power_of_two().trailing_zeros()
}

fn adjust_entry(entry: &mut kvm_cpuid_entry2, cpu: u32, vcpus: u32) {
    match entry.function {
        LEAF_FEATURES => {
            // EBX: [31:24] initial APIC ID, [23:16] logical processors per
            // package, [15:8] CLFLUSH line size in 8-byte units.
            entry.ebx = (cpu << 24) | ((vcpus & 0xff) << 16) | (8 << 8) | (entry.ebx & 0xff);
            entry.ecx |= ECX_HYPERVISOR;
            if vcpus > 1 {
                entry.edx |= EDX_HTT;
            } else {
                entry.edx &= !EDX_HTT;
            }
        }
        LEAF_CACHE_PARAMS => {
            // EAX[31:26]: cores per package - 1; EAX[25:14]: logical
            // processors sharing this cache - 1 (the L3 is shared by all).
            let level = (entry.eax >> 5) & 0x7;
            let sharing = if level >= 3 { vcpus - 1 } else { 0 };
            entry.eax =
                (entry.eax & 0x3fff) | ((sharing & 0xfff) << 14) | (((vcpus - 1) & 0x3f) << 26);
        }
        LEAF_PERF_MONITORING => {
            // No virtual PMU is offered.
            entry.eax = 0;
            entry.ebx = 0;
            entry.ecx = 0;
            entry.edx = 0;
        }
        LEAF_EXT_TOPOLOGY | LEAF_V2_EXT_TOPOLOGY => {
            entry.edx = cpu; // x2APIC ID
            match entry.index {
                0 => {
                    entry.eax = 0; // no SMT bits
                    entry.ebx = 1;
                    entry.ecx = (LEVEL_TYPE_SMT << 8) | entry.index;
                }
                1 => {
                    entry.eax = id_bits(vcpus);
                    entry.ebx = vcpus;
                    entry.ecx = (LEVEL_TYPE_CORE << 8) | entry.index;
                }
                _ => {
                    entry.eax = 0;
                    entry.ebx = 0;
                    entry.ecx = entry.index;
                }
            }
        }
        LEAF_AMD_ADDR_SIZES => {
            // ECX[15:12]: APIC ID size; ECX[7:0]: cores per package - 1.
            entry.ecx = (id_bits(vcpus) << 12) | ((vcpus - 1) & 0xff);
        }
        LEAF_AMD_EXT_APIC_ID => {
            entry.eax = cpu;
            entry.ebx = cpu & 0xff; // compute unit ID, one thread per unit
            entry.ecx = 0; // node 0
        }
        _ => {}
    }
}

/// Adjusts a copy of KVM's supported CPUID for vCPU `cpu` of `vcpus`.
pub fn for_vcpu(supported: &CpuId, cpu: u8, vcpus: u8) -> CpuId {
    let mut cpuid = supported.clone();
    let (cpu, vcpus) = (u32::from(cpu), u32::from(vcpus.max(1)));
    for entry in cpuid.as_mut_slice() {
        adjust_entry(entry, cpu, vcpus);
    }
    cpuid
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtualization_is_offered_or_hidden_whole() {
        let with = |function, ecx| kvm_cpuid_entry2 {
            function,
            ecx,
            ..Default::default()
        };
        let svm = CpuId::from_entries(&[
            with(LEAF_FEATURES, ECX_HYPERVISOR),
            with(LEAF_AMD_FEATURES, ECX_SVM | 1),
            kvm_cpuid_entry2 {
                function: LEAF_SVM_FEATURES,
                eax: 1,
                edx: 0x1b,
                ..Default::default()
            },
        ])
        .unwrap();
        let vmx = CpuId::from_entries(&[with(LEAF_FEATURES, ECX_VMX | ECX_HYPERVISOR)]).unwrap();
        for mut cpuid in [svm, vmx] {
            assert!(offers_virtualization(&cpuid));
            hide_virtualization(&mut cpuid);
            assert!(!offers_virtualization(&cpuid));
            for entry in cpuid.as_slice() {
                match entry.function {
                    // Only the extension's bits go.
                    LEAF_FEATURES => assert_eq!(entry.ecx, ECX_HYPERVISOR),
                    LEAF_AMD_FEATURES => assert_eq!(entry.ecx, 1),
                    _ => assert_eq!((entry.eax, entry.edx), (0, 0)),
                }
            }
        }
    }

    fn entry(function: u32, index: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            ..Default::default()
        }
    }

    fn sample() -> CpuId {
        CpuId::from_entries(&[
            entry(LEAF_FEATURES, 0),
            entry(LEAF_EXT_TOPOLOGY, 0),
            entry(LEAF_EXT_TOPOLOGY, 1),
            entry(LEAF_EXT_TOPOLOGY, 2),
            entry(LEAF_AMD_ADDR_SIZES, 0),
            kvm_cpuid_entry2 {
                function: LEAF_PERF_MONITORING,
                eax: 0x0703_0105,
                ..Default::default()
            },
        ])
        .unwrap()
    }

    fn find(cpuid: &CpuId, function: u32, index: u32) -> kvm_cpuid_entry2 {
        *cpuid
            .as_slice()
            .iter()
            .find(|e| e.function == function && e.index == index)
            .unwrap()
    }

    #[test]
    fn each_vcpu_sees_its_apic_id_and_the_count() {
        let cpuid = for_vcpu(&sample(), 3, 4);
        let leaf1 = find(&cpuid, LEAF_FEATURES, 0);
        assert_eq!(leaf1.ebx >> 24, 3);
        assert_eq!((leaf1.ebx >> 16) & 0xff, 4);
        assert_ne!(leaf1.ecx & ECX_HYPERVISOR, 0);
        assert_ne!(leaf1.edx & EDX_HTT, 0);
        assert_eq!(find(&cpuid, LEAF_EXT_TOPOLOGY, 0).edx, 3);
        let cores = find(&cpuid, LEAF_EXT_TOPOLOGY, 1);
        assert_eq!(cores.ebx, 4);
        assert_eq!(cores.eax, 2);
        assert_eq!((cores.ecx >> 8) & 0xff, LEVEL_TYPE_CORE);
        assert_eq!(find(&cpuid, LEAF_EXT_TOPOLOGY, 2).ecx, 2);
        assert_eq!(find(&cpuid, LEAF_AMD_ADDR_SIZES, 0).ecx & 0xff, 3);
        assert_eq!(find(&cpuid, LEAF_PERF_MONITORING, 0).eax, 0);
    }

    #[test]
    fn tsc_deadline_is_offered_in_leaf_1_only() {
        let mut cpuid = sample();
        offer_tsc_deadline(&mut cpuid);
        assert_ne!(find(&cpuid, LEAF_FEATURES, 0).ecx & ECX_TSC_DEADLINE, 0);
        assert_eq!(find(&cpuid, LEAF_EXT_TOPOLOGY, 0).ecx & ECX_TSC_DEADLINE, 0);
    }

    #[test]
    fn the_host_brand_string_replaces_or_joins_the_table_once() {
        let host = |f| std::arch::x86_64::__cpuid(f);
        if host(LEAF_EXT_MAX).eax < *LEAVES_BRAND.end() {
            return; // no brand on this host: nothing to pass
        }
        // One brand leaf present (zeroed, as KVM reports it), two absent.
        let mut cpuid = sample();
        cpuid.push(entry(0x8000_0002, 0)).unwrap();
        let before = cpuid.as_slice().len();
        pass_host_brand(&mut cpuid);
        assert_eq!(cpuid.as_slice().len(), before + 2);
        for f in LEAVES_BRAND {
            let e = find(&cpuid, f, 0);
            let h = host(f);
            assert_eq!((e.eax, e.ebx, e.ecx, e.edx), (h.eax, h.ebx, h.ecx, h.edx));
        }
        pass_host_brand(&mut cpuid);
        assert_eq!(cpuid.as_slice().len(), before + 2, "added once only");
    }

    #[test]
    fn single_vcpu_has_no_htt() {
        let cpuid = for_vcpu(&sample(), 0, 1);
        assert_eq!(find(&cpuid, LEAF_FEATURES, 0).edx & EDX_HTT, 0);
        assert_eq!(find(&cpuid, LEAF_EXT_TOPOLOGY, 1).eax, 0);
    }

    #[test]
    fn id_bits_rounds_up() {
        assert_eq!(id_bits(1), 0);
        assert_eq!(id_bits(2), 1);
        assert_eq!(id_bits(3), 2);
        assert_eq!(id_bits(8), 3);
    }
}
