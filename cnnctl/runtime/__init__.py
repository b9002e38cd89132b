"""Devices and precision, distributed processes, interrupts and seeding."""
