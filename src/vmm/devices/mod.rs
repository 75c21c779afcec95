//! Emulated devices and the port-I/O bus the vCPUs dispatch to.

pub mod acpi_power;
pub mod bus;
pub mod i8042;
pub mod serial;

use std::sync::mpsc::Sender;

use super::exit::VmExit;

/// Where devices report that the VM must stop (power-off, reset).
pub type ExitSender = Sender<VmExit>;
pub mod virtio;
