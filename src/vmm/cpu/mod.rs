//! vCPUs: their boot state and the loop that runs each on its own thread.

pub mod cpuid;
pub mod msr;
pub mod regs;

use std::os::unix::thread::JoinHandleExt;
use std::sync::Arc;

use kvm_bindings::{CpuId, KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN, kvm_regs, kvm_sregs};
use kvm_ioctls::{VcpuExit, VcpuFd, VmFd};
use vm_memory::GuestAddress;

use super::devices::bus::Buses;
use super::exit::{ExitSignal, VmExit};

/// LAPIC local vector table registers and delivery modes, for wiring
/// LINT0 to the PIC (ExtINT) and LINT1 to NMI as a PC does.
const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_NMI: u32 = 0x4;
const APIC_MODE_EXTINT: u32 = 0x7;

/// Errors of vCPU setup.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot create vCPU {id}: {source}")]
    Create { id: u8, source: kvm_ioctls::Error },
    #[error("cannot set {what} of vCPU {id}: {source}")]
    Set {
        id: u8,
        what: &'static str,
        source: kvm_ioctls::Error,
    },
    #[error("KVM accepted only {set} of {wanted} boot MSRs on vCPU {id}")]
    Msrs { id: u8, set: usize, wanted: usize },
    #[error(transparent)]
    MsrList(#[from] msr::Error),
    #[error("cannot start the thread of vCPU {id}: {source}")]
    Thread { id: u8, source: std::io::Error },
}

/// One virtual CPU.
#[derive(Debug)]
pub struct Vcpu {
    id: u8,
    fd: VcpuFd,
}

/// What one exit asks of the run loop.
enum Step {
    Continue,
    Stop(VmExit),
    /// A crash whose description needs the registers.
    Crash(String),
    /// KVM could not handle an exit; its suberror says why.
    InternalError,
}

fn lapic_register(lapic: &[std::os::raw::c_char], offset: usize) -> Option<u32> {
    let bytes = lapic.get(offset..offset + 4)?;
    let mut raw = [0u8; 4];
    for (dst, src) in raw.iter_mut().zip(bytes) {
        *dst = src.to_ne_bytes()[0];
    }
    Some(u32::from_le_bytes(raw))
}

fn set_lapic_register(lapic: &mut [std::os::raw::c_char], offset: usize, value: u32) {
    if let Some(bytes) = lapic.get_mut(offset..offset + 4) {
        for (dst, src) in bytes.iter_mut().zip(value.to_le_bytes()) {
            *dst = std::os::raw::c_char::from_ne_bytes([src]);
        }
    }
}

/// Replaces the delivery mode (bits 10:8) of an LVT entry.
fn with_delivery_mode(reg: u32, mode: u32) -> u32 {
    (reg & !0x700) | (mode << 8)
}

impl Vcpu {
    /// Creates vCPU `id` in `vm`.
    pub fn new(vm: &VmFd, id: u8) -> Result<Self, Error> {
        let fd = vm
            .create_vcpu(u64::from(id))
            .map_err(|source| Error::Create { id, source })?;
        Ok(Self { id, fd })
    }

    fn set<T>(&self, what: &'static str, r: Result<T, kvm_ioctls::Error>) -> Result<T, Error> {
        r.map_err(|source| Error::Set {
            id: self.id,
            what,
            source,
        })
    }

    /// Puts the vCPU in the state the Linux 64-bit boot protocol wants.
    pub fn configure(
        &self,
        supported: &CpuId,
        vcpus: u8,
        entry: GuestAddress,
    ) -> Result<(), Error> {
        let cpuid = cpuid::for_vcpu(supported, self.id, vcpus);
        self.set("CPUID", self.fd.set_cpuid2(&cpuid))?;

        let msrs = msr::boot_msrs()?;
        let set = self.set("MSRs", self.fd.set_msrs(&msrs))?;
        if set != msrs.as_slice().len() {
            return Err(Error::Msrs {
                id: self.id,
                set,
                wanted: msrs.as_slice().len(),
            });
        }

        self.set("registers", self.fd.set_regs(&regs::boot_regs(entry)))?;
        let sregs = self.set("special registers", self.fd.get_sregs())?;
        self.set(
            "special registers",
            self.fd.set_sregs(&regs::long_mode_sregs(sregs)),
        )?;
        self.set("FPU", self.fd.set_fpu(&regs::boot_fpu()))?;

        let mut lapic = self.set("local APIC", self.fd.get_lapic())?;
        for (offset, mode) in [(APIC_LVT0, APIC_MODE_EXTINT), (APIC_LVT1, APIC_MODE_NMI)] {
            let reg = lapic_register(&lapic.regs, offset).unwrap_or_default();
            set_lapic_register(&mut lapic.regs, offset, with_delivery_mode(reg, mode));
        }
        self.set("local APIC", self.fd.set_lapic(&lapic))?;
        Ok(())
    }

    /// Describes the vCPU state for a crash report.
    fn describe_state(&self, reason: &str) -> String {
        let regs = self.fd.get_regs().unwrap_or_else(|_| kvm_regs::default());
        let sregs = self.fd.get_sregs().unwrap_or_else(|_| kvm_sregs::default());
        format!(
            "vCPU {id}: {reason}\n  rip={:#018x} rsp={:#018x} rflags={:#x}\n  \
             rax={:#x} rbx={:#x} rcx={:#x} rdx={:#x} rsi={:#x} rdi={:#x}\n  \
             cr0={:#x} cr2={:#x} cr3={:#x} cr4={:#x} efer={:#x} cs={:#x}",
            regs.rip,
            regs.rsp,
            regs.rflags,
            regs.rax,
            regs.rbx,
            regs.rcx,
            regs.rdx,
            regs.rsi,
            regs.rdi,
            sregs.cr0,
            sregs.cr2,
            sregs.cr3,
            sregs.cr4,
            sregs.efer,
            sregs.cs.selector,
            id = self.id,
        )
    }

    /// The suberror of a `KVM_EXIT_INTERNAL_ERROR`.
    fn internal_error_suberror(&mut self) -> u32 {
        let run = self.fd.get_kvm_run();
        // SAFETY: called right after KVM_RUN returned KVM_EXIT_INTERNAL_ERROR,
        // for which `internal` is the union member KVM filled in.
        unsafe { run.__bindgen_anon_1.internal.suberror }
    }

    /// Runs one exit of the guest and says what to do next.
    fn step(&mut self, buses: &Buses) -> Step {
        match self.fd.run() {
            Ok(VcpuExit::IoIn(port, data)) => {
                buses.pio.read(u64::from(port), data);
                Step::Continue
            }
            Ok(VcpuExit::IoOut(port, data)) => {
                buses.pio.write(u64::from(port), data);
                Step::Continue
            }
            Ok(VcpuExit::MmioRead(addr, data)) => {
                buses.mmio.read(addr, data);
                Step::Continue
            }
            Ok(VcpuExit::MmioWrite(addr, data)) => {
                buses.mmio.write(addr, data);
                Step::Continue
            }
            Ok(VcpuExit::Intr) => Step::Continue,
            Ok(VcpuExit::SystemEvent(kind, _)) => match kind {
                KVM_SYSTEM_EVENT_SHUTDOWN => Step::Stop(VmExit::PowerOff),
                KVM_SYSTEM_EVENT_RESET => Step::Stop(VmExit::Reboot),
                other => Step::Crash(format!("system event {other}")),
            },
            // AMD's KVM resets the vCPU on shutdown: the registers may show
            // the reset state rather than the fault.
            Ok(VcpuExit::Shutdown) => Step::Crash(
                "triple fault (KVM_EXIT_SHUTDOWN; on AMD hosts the registers below are \
                 the vCPU's reset state)"
                    .into(),
            ),
            Ok(VcpuExit::InternalError) => Step::InternalError,
            Ok(VcpuExit::FailEntry(reason, cpu)) => Step::Crash(format!(
                "VM entry failed, hardware reason {reason:#x} on host CPU {cpu}"
            )),
            Ok(VcpuExit::Hlt) => Step::Crash("halted with no in-kernel irqchip to wake it".into()),
            Ok(other) => Step::Crash(format!("unexpected KVM exit {other:?}")),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => Step::Continue,
            Err(e) => Step::Crash(format!("KVM_RUN failed: {e}")),
        }
    }

    /// Runs the vCPU until the guest stops it, then reports why.
    fn run(&mut self, buses: &Buses, exits: &ExitSignal) {
        let exit = loop {
            match self.step(buses) {
                // A device asked the VM to stop: leave the guest where it is.
                Step::Continue if exits.is_stopping() => return,
                Step::Continue => {}
                Step::Stop(exit) => break exit,
                Step::InternalError => {
                    let sub = self.internal_error_suberror();
                    break VmExit::Crash(
                        self.describe_state(&format!("KVM internal error, suberror {sub}")),
                    );
                }
                Step::Crash(reason) => break VmExit::Crash(self.describe_state(&reason)),
            }
        };
        exits.stop(exit);
    }

    /// Starts the vCPU on its own thread. The thread hands the vCPU back
    /// when it ends, so that its `kvm_run` page outlives every kick.
    pub fn spawn(mut self, buses: Arc<Buses>, exits: ExitSignal) -> Result<VcpuHandle, Error> {
        let id = self.id;
        install_kick_handler().map_err(|source| Error::Thread {
            id,
            source: source.into(),
        })?;
        let run = KvmRunPtr(std::ptr::from_mut(self.fd.get_kvm_run()));
        let thread = crate::vmm::thread(format!("vcpu{id}"))
            .spawn(move || {
                super::sandbox::seccomp::enter(super::sandbox::seccomp::ThreadKind::Vcpu);
                self.run(&buses, &exits);
                self
            })
            .map_err(|source| Error::Thread { id, source })?;
        Ok(VcpuHandle {
            id,
            thread: Some(thread),
            run,
        })
    }
}

/// The signal that kicks a vCPU thread out of `KVM_RUN`.
pub(crate) fn kick_signal() -> libc::c_int {
    vmm_sys_util::signal::SIGRTMIN()
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // Nothing to do: arriving is the point (KVM_RUN returns EINTR).
}

/// Installs the (empty) handler of the kick signal, once per process.
fn install_kick_handler() -> Result<(), vmm_sys_util::errno::Error> {
    static INSTALLED: std::sync::OnceLock<Result<(), vmm_sys_util::errno::Error>> =
        std::sync::OnceLock::new();
    *INSTALLED.get_or_init(|| vmm_sys_util::signal::register_signal_handler(kick_signal(), on_kick))
}

/// A vCPU's `kvm_run` page, written by the thread that stops the VM.
#[derive(Debug)]
struct KvmRunPtr(*mut kvm_bindings::kvm_run);

// SAFETY: the page is mapped for as long as the vCPU fd lives, which the
// vCPU thread hands back to its `VcpuHandle` instead of dropping; only
// the `immediate_exit` byte is written from another thread, a byte KVM
// reads once on entry to KVM_RUN.
unsafe impl Send for KvmRunPtr {}

/// A running vCPU thread.
#[derive(Debug)]
pub struct VcpuHandle {
    id: u8,
    thread: Option<std::thread::JoinHandle<Vcpu>>,
    run: KvmRunPtr,
}

impl VcpuHandle {
    /// Makes the vCPU leave `KVM_RUN` at once and stay out: sets
    /// `immediate_exit` (for a thread about to enter) and signals the
    /// thread (for one inside). The VM must be stopping
    /// ([`ExitSignal::stop`]) so that the run loop ends.
    pub fn kick(&self) {
        let Some(thread) = &self.thread else { return };
        if thread.is_finished() {
            return;
        }
        let flag = self
            .run
            .0
            .cast::<u8>()
            .wrapping_add(std::mem::offset_of!(kvm_bindings::kvm_run, immediate_exit));
        // SAFETY: `flag` is the immediate_exit byte of the vCPU's kvm_run
        // page, mapped while this handle holds the thread (see KvmRunPtr).
        unsafe { std::ptr::write_volatile(flag, 1) };
        // SAFETY: the thread has not been joined (we hold its handle), so
        // its pthread_t is valid; the signal has a handler.
        unsafe { libc::pthread_kill(thread.as_pthread_t(), kick_signal()) };
    }

    /// Kicks the vCPU until its thread ends or `deadline` passes; returns
    /// whether it ended (and was joined).
    pub fn stop(&mut self, deadline: std::time::Instant) -> bool {
        loop {
            let Some(thread) = &self.thread else {
                return true;
            };
            if thread.is_finished() {
                if let Some(thread) = self.thread.take() {
                    // The vCPU comes back and is dropped here, after
                    // every kick.
                    let _ = thread.join();
                }
                return true;
            }
            if std::time::Instant::now() >= deadline {
                eprintln!("gureum: vCPU {} did not stop in time", self.id);
                return false;
            }
            self.kick();
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Whether the vCPU thread has ended.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lapic_registers_round_trip() {
        let mut regs = [0 as std::os::raw::c_char; 1024];
        set_lapic_register(&mut regs, APIC_LVT0, 0x0001_0000);
        let updated =
            with_delivery_mode(lapic_register(&regs, APIC_LVT0).unwrap(), APIC_MODE_EXTINT);
        assert_eq!(updated, 0x0001_0700);
        set_lapic_register(&mut regs, APIC_LVT0, updated);
        assert_eq!(lapic_register(&regs, APIC_LVT0), Some(0x0001_0700));
        assert_eq!(lapic_register(&regs, 1022), None);
    }
}
