//! The virtual machine monitor: one KVM virtual machine, its memory,
//! vCPUs and devices, run in the calling process.

pub mod boot;
pub mod console;
pub mod console_queue;
pub mod cpu;
pub mod devices;
pub mod exit;
pub mod kvm;
pub mod layout;
pub mod memory;
pub mod metrics;
pub mod named_file;
pub mod sandbox;
pub mod vm;

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use kvm_ioctls::{Cap, IoEventAddress, VmFd};
use vmm_sys_util::eventfd::EventFd;

use crate::host::mac::MacAddr;
use boot::BootSource;
use devices::acpi_ged::{self, AcpiGed, PowerButton};
use devices::acpi_power::{self, AcpiPower};
use devices::bus::Buses;
use devices::i8042::I8042;
use devices::serial::SerialPort;
use devices::virtio::block::{self, Block};
use devices::virtio::mmio::{self, MMIO_WINDOW, MmioTransport};
use devices::virtio::net::{Net, NetLimits, Tap, tap};
use devices::virtio::rate_limit::RateLimit;
use devices::virtio::{DeviceMetrics, Interrupt, VirtioDevice};
use exit::{ExitSignal, VmExit};
use layout::{
    ACPI_GED_GSI, ACPI_GED_PORT, ACPI_SLEEP_CONTROL_PORT, COM1_IRQ, COM1_PORT, I8042_PORT,
    VIRTIO_FIRST_GSI, VIRTIO_LAST_GSI, VIRTIO_MMIO_BASE,
};
use metrics::{MetricsSource, Startup, VmmFigures};

/// Smallest guest memory accepted, in MiB: below this no Linux boots.
pub const MIN_MEMORY_MIB: u64 = 16;
/// Largest vCPU count: APIC IDs are 8 bits in the MADT and the IOAPIC
/// takes one.
pub const MAX_VCPUS: u8 = 254;

/// Errors of building or running a VM.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kvm(#[from] kvm::Error),
    #[error("--vcpus must be at least 1")]
    NoVcpus,
    #[error("--vcpus {asked} is more than this host's KVM allows ({max})")]
    TooManyVcpus { asked: u16, max: u16 },
    #[error(
        "nested virtualization was asked for, but this host's KVM offers its guests no SVM or \
         VMX: turn on the nested parameter of kvm_amd or kvm_intel (e.g. `modprobe -r kvm_amd \
         && modprobe kvm_amd nested=1`, or nested=1 in /etc/modprobe.d) with no VM running"
    )]
    NoNestedVirtualization,
    #[error("--memory {0} MiB is too small; give at least {MIN_MEMORY_MIB} MiB")]
    MemoryTooSmall(u64),
    #[error("{0} disks and network interfaces are more than the {max} a VM can have", max = VIRTIO_LAST_GSI - VIRTIO_FIRST_GSI + 1)]
    TooManyDevices(usize),
    #[error(transparent)]
    Memory(#[from] memory::Error),
    #[error(transparent)]
    Boot(#[from] boot::Error),
    #[error(transparent)]
    Regs(#[from] cpu::regs::Error),
    #[error(transparent)]
    Vm(#[from] vm::Error),
    #[error(transparent)]
    Vcpu(#[from] cpu::Error),
    #[error(transparent)]
    Bus(#[from] devices::bus::Error),
    #[error(transparent)]
    Disk(#[from] block::Error),
    #[error(transparent)]
    Tap(#[from] tap::Error),
    #[error(transparent)]
    Transport(#[from] mmio::Error),
    #[error(transparent)]
    Sandbox(#[from] sandbox::Error),
    #[error("cannot register the notify address of {device} with KVM: {source}")]
    IoEvent {
        device: String,
        source: kvm_ioctls::Error,
    },
    #[error("cannot read the CPUID KVM supports: {0}")]
    SupportedCpuid(kvm_ioctls::Error),
    #[error("cannot start the console threads: {0}")]
    Console(std::io::Error),
    #[error("cannot start the thread that starts the device workers: {0}")]
    Spawner(std::io::Error),
    #[error("cannot create an eventfd for {what}: {source}")]
    EventFd {
        what: &'static str,
        source: std::io::Error,
    },
}

/// Stack of each VMM thread: far more than any needs, and under 2 MiB, so
/// that a host whose THP setting is "always" never backs one with a huge
/// page (seen in the rig: one stack alone added 2 MiB to the VMM's own
/// memory).
pub const THREAD_STACK: usize = 1 << 20;

/// A builder for a VMM thread named `name`, with [`THREAD_STACK`].
pub fn thread(name: impl Into<String>) -> std::thread::Builder {
    std::thread::Builder::new()
        .name(name.into())
        .stack_size(THREAD_STACK)
}

/// A disk to attach as virtio-blk.
#[derive(Debug, Clone)]
pub struct DiskConfig {
    pub path: PathBuf,
    pub read_only: bool,
    /// Bytes and requests per second the guest may do; 0 is no limit.
    pub limit: RateLimit,
}

/// A network interface to attach as virtio-net.
#[derive(Debug, Clone)]
pub struct NetConfig {
    pub tap: String,
    pub mac: MacAddr,
    /// The named network namespace the (existing) tap is in, if not this
    /// process's.
    pub netns: Option<String>,
    /// Bytes and frames per second each way; 0 is no limit.
    pub limits: NetLimits,
}

/// A VM to boot.
#[derive(Debug, Clone)]
pub struct VmConfig {
    pub boot: BootSource,
    pub vcpus: u16,
    pub memory_mib: u64,
    /// Whether guest RAM asks for transparent huge pages.
    pub huge_pages: memory::HugePages,
    pub disks: Vec<DiskConfig>,
    pub nets: Vec<NetConfig>,
    /// What the SMBIOS tables say the machine is.
    pub platform: boot::smbios::Platform,
    /// The host's virtualization extension (SVM or VMX) is offered to
    /// the guest, which can then run VMs of its own.
    pub nested_virtualization: bool,
}

/// A VM that has been built and is running.
pub struct RunningVm {
    exits: std::sync::mpsc::Receiver<VmExit>,
    exit_tx: ExitSignal,
    power_button: PowerButton,
    console_in: console_queue::QueuedInput,
    console_out: console_queue::BufferedOutput,
    device_metrics: Vec<(String, Arc<dyn DeviceMetrics>)>,
    startup: Startup,
    /// `/proc/self/statm`, for the memory figures (see `start`).
    statm: Option<Arc<std::fs::File>>,
    vcpus: Mutex<Vec<cpu::VcpuHandle>>,
    // Unmapped only once every vCPU thread has been joined (see Drop).
    memory: Option<memory::GuestMemory>,
    vm: Option<VmFd>,
}

impl std::fmt::Debug for RunningVm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningVm").finish_non_exhaustive()
    }
}

fn eventfd(what: &'static str) -> Result<EventFd, Error> {
    EventFd::new(libc::EFD_NONBLOCK).map_err(|source| Error::EventFd { what, source })
}

/// Checks the vCPU count against what this host's KVM allows.
fn vcpu_count(kvm: &kvm_ioctls::Kvm, asked: u16) -> Result<u8, Error> {
    let kvm_max = u16::try_from(kvm.get_max_vcpus()).unwrap_or(u16::MAX);
    let max = kvm_max.min(u16::from(MAX_VCPUS));
    u8::try_from(asked)
        .ok()
        .filter(|&v| u16::from(v) <= max)
        .ok_or(Error::TooManyVcpus { asked, max })
}

/// Disk names as the guest will see them: vda, vdb, ...
fn disk_name(index: usize) -> String {
    let letter = u8::try_from(index % 26).map_or('?', |i| char::from(b'a' + i));
    format!("vd{letter}")
}

/// Opens the disks and taps; done before KVM so that bad paths are
/// reported first.
fn open_devices(config: &VmConfig) -> Result<Vec<Box<dyn VirtioDevice>>, Error> {
    let count = config.disks.len() + config.nets.len();
    if count > usize::try_from(VIRTIO_LAST_GSI - VIRTIO_FIRST_GSI + 1).unwrap_or(0) {
        return Err(Error::TooManyDevices(count));
    }
    let mut devices: Vec<Box<dyn VirtioDevice>> = Vec::new();
    for (i, disk) in config.disks.iter().enumerate() {
        devices.push(Box::new(
            Block::open(&disk.path, disk.read_only, &disk_name(i))?
                .with_rate_limit(disk.limit)
                .with_queues(config.vcpus),
        ));
    }
    for net in &config.nets {
        let tap = match &net.netns {
            Some(netns) => Tap::open_in(&net.tap, netns)?,
            None => Tap::open(&net.tap)?,
        };
        devices.push(Box::new(
            Net::new(tap, net.mac).with_rate_limits(net.limits),
        ));
    }
    Ok(devices)
}

/// Puts the virtio devices on the MMIO bus with their ioeventfds and
/// irqfds; returns where they are for the ACPI tables.
pub fn attach_virtio(
    vm: &VmFd,
    mem: &memory::GuestMemory,
    buses: &mut Buses,
    devices: Vec<Box<dyn VirtioDevice>>,
) -> Result<Vec<boot::acpi::VirtioMmioDevice>, Error> {
    let mut placed = Vec::new();
    for ((device, gsi), index) in devices.into_iter().zip(VIRTIO_FIRST_GSI..).zip(0u64..) {
        let base = VIRTIO_MMIO_BASE + index * MMIO_WINDOW;
        let irq = eventfd("a virtio interrupt")?;
        vm::register_irqfd(vm, &irq, gsi)?;
        let name = device.name().to_string();
        let transport = MmioTransport::new(device, mem.clone(), Arc::new(Interrupt::new(irq)))?;
        for (queue, evt) in (0u32..).zip(transport.queue_evts()) {
            vm.register_ioevent(
                evt,
                &IoEventAddress::Mmio(base + mmio::REG_QUEUE_NOTIFY),
                queue,
            )
            .map_err(|source| Error::IoEvent {
                device: name.clone(),
                source,
            })?;
        }
        buses
            .mmio
            .insert(base, MMIO_WINDOW, Arc::new(Mutex::new(transport)))?;
        placed.push(boot::acpi::VirtioMmioDevice {
            base,
            size: MMIO_WINDOW,
            gsi,
        });
    }
    Ok(placed)
}

/// Builds the VM from `config` and starts its vCPUs. Guest console output
/// goes to `console_out`.
pub fn start(config: &VmConfig, console_out: Box<dyn Write + Send>) -> Result<RunningVm, Error> {
    let began = std::time::Instant::now();
    // Input first: a bad file is reported whatever the host.
    if config.vcpus == 0 {
        return Err(Error::NoVcpus);
    }
    if config.memory_mib < MIN_MEMORY_MIB {
        return Err(Error::MemoryTooSmall(config.memory_mib));
    }
    let files = boot::BootFiles::open(&config.boot)?;
    files.check_fits(config.memory_mib)?;
    let devices = open_devices(config)?;
    let device_metrics = devices
        .iter()
        .map(|d| (d.name().to_string(), d.metrics()))
        .collect();

    let kvm = kvm::open()?;
    kvm::check_hardware_virtualization()?;
    let vcpus = vcpu_count(&kvm, config.vcpus)?;

    let mem = memory::create_with(config.memory_mib, config.huge_pages)?;
    let vm = vm::create(&kvm, &mem)?;
    let mut buses = Buses::default();
    let virtio = attach_virtio(&vm, &mem, &mut buses, devices)?;
    let boot = files.load(&mem, vcpus, &virtio, &config.platform)?;
    cpu::regs::write_boot_structures(&mem)?;

    let (exit_tx, exits) = ExitSignal::new();
    let (console_out, console_out_thread) = console_queue::BufferedOutput::new(console_out);
    let serial_irq = eventfd("the serial interrupt")?;
    vm::register_irqfd(&vm, &serial_irq, COM1_IRQ)?;
    let serial_drained = EventFd::new(0).map_err(|source| Error::EventFd {
        what: "serial input",
        source,
    })?;
    let serial = Arc::new(Mutex::new(SerialPort::new(
        serial_irq,
        serial_drained
            .try_clone()
            .map_err(|source| Error::EventFd {
                what: "serial input",
                source,
            })?,
        Box::new(console_out.clone()),
    )));
    let (console_in, console_in_thread) =
        console_queue::QueuedInput::new(serial.clone(), serial_drained);
    buses.pio.insert(u64::from(COM1_PORT), 8, serial.clone())?;
    buses.pio.insert(
        u64::from(I8042_PORT),
        5,
        Arc::new(Mutex::new(I8042::new(exit_tx.clone()))),
    )?;
    buses.pio.insert(
        u64::from(ACPI_SLEEP_CONTROL_PORT),
        acpi_power::PORTS,
        Arc::new(Mutex::new(AcpiPower::new(exit_tx.clone()))),
    )?;
    let ged_irq = eventfd("the ACPI event interrupt")?;
    vm::register_irqfd(&vm, &ged_irq, ACPI_GED_GSI)?;
    let ged = Arc::new(Mutex::new(AcpiGed::new(ged_irq)));
    buses
        .pio
        .insert(u64::from(ACPI_GED_PORT), acpi_ged::PORTS, ged.clone())?;
    let buses = Arc::new(buses);

    let mut supported = kvm
        .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
        .map_err(Error::SupportedCpuid)?;
    if config.nested_virtualization {
        if !cpu::cpuid::offers_virtualization(&supported) {
            return Err(Error::NoNestedVirtualization);
        }
    } else {
        cpu::cpuid::hide_virtualization(&mut supported);
    }
    if kvm.check_extension(Cap::TscDeadlineTimer) {
        cpu::cpuid::offer_tsc_deadline(&mut supported);
    }
    cpu::cpuid::pass_host_brand(&mut supported);
    let vcpu_fds = (0..vcpus)
        .map(|id| {
            let vcpu = cpu::Vcpu::new(&vm, id)?;
            vcpu.configure(&supported, vcpus, boot.entry)?;
            Ok(vcpu)
        })
        .collect::<Result<Vec<_>, Error>>()?;
    // Before the jail: /proc is not in its root. Without it the metrics
    // leave the VMM's memory figures out.
    let statm = std::fs::File::open("/proc/self/statm").ok().map(Arc::new);
    // Every file is open and no thread runs yet: the jail's moment.
    sandbox::lock_down()?;
    console_out_thread.start().map_err(Error::Console)?;
    console_in_thread.start().map_err(Error::Console)?;
    // Before the vCPUs, which activate the devices: their workers are
    // started by it, under its filter rather than a vCPU's.
    devices::virtio::worker::start_spawner().map_err(Error::Spawner)?;
    let startup = Startup::now(began.elapsed());
    let mut handles = Vec::new();
    for vcpu in vcpu_fds {
        match vcpu.spawn(buses.clone(), exit_tx.clone()) {
            Ok(handle) => handles.push(handle),
            Err(e) => {
                exit_tx.stop(VmExit::Terminated);
                if !stop_vcpus(&mut handles) {
                    // Never unmap guest memory under a running vCPU.
                    std::mem::forget(mem);
                    std::mem::forget(vm);
                }
                return Err(e.into());
            }
        }
    }
    Ok(RunningVm {
        exits,
        exit_tx,
        power_button: PowerButton::new(ged),
        console_in,
        console_out,
        device_metrics,
        startup,
        statm,
        vcpus: Mutex::new(handles),
        memory: Some(mem),
        vm: Some(vm),
    })
}

/// How long stopping vCPUs may take before the VMM gives up on them
/// (and keeps guest memory mapped until the process ends).
pub const VCPU_STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Kicks every vCPU out of the guest and joins its thread, within
/// [`VCPU_STOP_TIMEOUT`]; returns whether all of them ended. The VM must
/// be stopping already.
fn stop_vcpus(vcpus: &mut [cpu::VcpuHandle]) -> bool {
    let deadline = std::time::Instant::now() + VCPU_STOP_TIMEOUT;
    // Every vCPU is stopped, whether or not an earlier one failed to.
    let stopped = vcpus
        .iter_mut()
        .map(|v| v.stop(deadline))
        .collect::<Vec<_>>();
    stopped.into_iter().all(|s| s)
}

impl Drop for RunningVm {
    fn drop(&mut self) {
        self.exit_tx.stop(VmExit::Terminated);
        let mut vcpus = self.vcpus.lock().unwrap_or_else(PoisonError::into_inner);
        if !stop_vcpus(&mut vcpus) {
            // A vCPU still runs: its guest memory must stay mapped.
            std::mem::forget(self.memory.take());
            std::mem::forget(self.vm.take());
        }
    }
}

impl RunningVm {
    /// A handle that can feed console input from another thread.
    pub fn console(&self) -> std::io::Result<ConsoleInput> {
        Ok(ConsoleInput {
            queue: self.console_in.clone(),
            exits: self.exit_tx.clone(),
        })
    }

    /// A handle that reads the VM's counters from another thread.
    pub fn metrics_source(&self) -> MetricsSource {
        let source = MetricsSource::new(self.device_metrics.clone(), self.console_out.clone());
        match &self.memory {
            Some(memory) => source.with_vmm(VmmFigures {
                startup: self.startup,
                statm: self.statm.clone(),
                memory: memory.clone(),
            }),
            None => source,
        }
    }

    /// A handle that stops the VM from another thread.
    pub fn stopper(&self) -> ExitSignal {
        self.exit_tx.clone()
    }

    /// A handle that presses the guest's ACPI power button from another
    /// thread.
    pub fn power_button(&self) -> PowerButton {
        self.power_button.clone()
    }

    /// Blocks until the VM stops, stops every vCPU, and says why.
    pub fn wait(&self) -> VmExit {
        let exit = loop {
            match self
                .exits
                .recv_timeout(std::time::Duration::from_millis(200))
            {
                Ok(exit) => break exit,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    // Every vCPU thread ended without a word: only a crash
                    // of the thread itself does that.
                    let vcpus = self.vcpus.lock().unwrap_or_else(PoisonError::into_inner);
                    if vcpus.iter().all(cpu::VcpuHandle::is_finished) {
                        break VmExit::Crash("all vCPU threads ended".into());
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    break VmExit::Crash("all vCPU threads ended".into());
                }
            }
        };
        self.exit_tx.stop(exit.clone());
        let mut vcpus = self.vcpus.lock().unwrap_or_else(PoisonError::into_inner);
        stop_vcpus(&mut vcpus);
        // The guest's last words reach the console before the VMM ends.
        self.console_out.drain(2 * console::CLIENT_WRITE_TIMEOUT);
        exit
    }
}

/// Feeds console input to a running VM from another thread.
#[derive(Debug)]
pub struct ConsoleInput {
    queue: console_queue::QueuedInput,
    exits: ExitSignal,
}

impl ConsoleInput {
    /// Stops the VM on behalf of the person at the console.
    pub fn detach(&self) {
        self.exits.stop(VmExit::Detached);
    }

    /// Queues `bytes` for the guest; never waits for the guest to read
    /// them (input past [`console_queue::INPUT_CAPACITY`] unread bytes is
    /// dropped, as a UART overruns).
    pub fn send(&self, bytes: &[u8]) {
        self.queue.send(bytes);
    }
}
