//! Engine simulator and QEMU harness (grows with the registration and boot issues).
