/* SPDX-License-Identifier: MIT */
/*
 * The cosim guest-test library, for test programs; the library's own files include only the
 * headers below theirs. From the bottom up:
 *   tap.h      TAP 13 harness: cases in child processes, results, diagnostics, teardown hooks
 *   suite.h    a test binary: case table, shared options, COSIM_SUITE (defines main)
 *   status.h   how library calls report: EP_OK / EP_ERR / EP_UNSUP, ep_err, TRY
 *   sysfs.h    sysfs files and device nodes
 *   pci.h      a PCI function: discovery, config space, driver binding, sysfs BARs
 *   iommufd.h  iommufd IOAS, mappings, HWPTs; memory for DMA
 *   vfio.h     a VFIO device cdev bound to an iommufd: regions, RID and PASID attach
 *   ep.h       cosim-pcie-ep: open/close, registers, markers, attaches undone after the case
 *   dma.h      its DMA engine
 *   tg.h       its traffic generator, counters and records in memory
 *   kmod.h     the guest-kmod test driver bound to it: load, bind, cases, result lines
 */
#ifndef COSIM_H
#define COSIM_H

#include "tap.h"
#include "suite.h"
#include "status.h"
#include "sysfs.h"
#include "pci.h"
#include "iommufd.h"
#include "vfio.h"
#include "ep.h"
#include "dma.h"
#include "tg.h"
#include "kmod.h"

#endif /* COSIM_H */
