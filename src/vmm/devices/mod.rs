//! Emulated devices and the port-I/O bus the vCPUs dispatch to.

pub mod acpi_ged;
pub mod acpi_power;
pub mod bus;
pub mod i8042;
pub mod serial;

pub mod virtio;
