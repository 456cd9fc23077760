/* SPDX-License-Identifier: MIT */
/*
 * cosim guest-test library: a TAP 13 harness (tap.c), sysfs and PCI config-space helpers
 * (sysfs.c), a userspace driver for cosim-pcie-ep over VFIO cdev + iommufd (vfio.c), and
 * the endpoint's registers: markers, DMA engine, traffic generator, counters (ep.c).
 */
#ifndef COSIM_H
#define COSIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cosim_ep.h"

/* ------------------------------------------------------------------------------------- */
/* Harness (tap.c) */

enum result { R_PASS, R_FAIL, R_SKIP, R_UNSUP };

/* Numeric parameters shared by every binary; each binary documents the ones it reads. */
struct opts {
	unsigned count;      /* domain switches / unmaps per case */
	unsigned settle;     /* generator records to wait for after a switch before checking */
	unsigned timeout_ms; /* longest wait for the generator to make that progress */
	unsigned rate;       /* TG_RATE: records per model poll */
	unsigned stride;     /* TG_STRIDE: bytes between records */
	unsigned pasid;      /* PASID used by PASID-tagged traffic */
	unsigned case_timeout_s; /* a case running longer than this is killed and fails */
	uint64_t size;       /* bytes per DMA buffer / generator window */
	bool ats;            /* run the ATS variants (--no-ats clears it) */
	bool verbose;
	const char *bdf;     /* endpoint address; default: found by vendor/device ID */
	const char *only;    /* run only the case with this name */
};

struct tcase {
	const char *name;
	enum result (*fn)(const struct opts *o);
	const char *what; /* one line for --help */
};

struct suite {
	const char *prog;
	const char *summary;   /* what the binary checks, for --help */
	const char *params;    /* which options it reads, for --help */
	const struct tcase *cases;
	int ncases;
	struct opts defaults;
};

int suite_main(const struct suite *s, int argc, char **argv);

/* Inside a case: diagnostics ("# ..."), then return one of these. */
void diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void vdiag(const char *fmt, ...) __attribute__((format(printf, 1, 2))); /* only with -v */
enum result fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
enum result unsupported(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
enum result skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Library calls return EP_OK, EP_ERR (a failure) or EP_UNSUP (the kernel lacks a feature);
 * ep_err holds the reason, with the numbers (errno, values) that prove it. */
enum { EP_OK = 0, EP_ERR = -1, EP_UNSUP = -2 };
extern char ep_err[512];
int ep_set_err(int rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Turn a library failure into the case's result, naming the step. */
enum result lib_result(int rc, const char *step);

#define TRY(step, call)                                                     \
	do {                                                                \
		int rc_ = (call);                                           \
		if (rc_ != EP_OK)                                           \
			return lib_result(rc_, step);                       \
	} while (0)

#define EXPECT(cond, ...)                                                   \
	do {                                                                \
		if (!(cond))                                                \
			return fail(__VA_ARGS__);                           \
	} while (0)

uint64_t now_ms(void);
void sleep_ms(unsigned ms);

/* ------------------------------------------------------------------------------------- */
/* sysfs and PCI config space (sysfs.c) */

int sysfs_read(const char *path, char *buf, size_t len);  /* trailing newline stripped */
int sysfs_write(const char *path, const char *val);
bool path_exists(const char *path);

/* ------------------------------------------------------------------------------------- */
/* The endpoint (vfio.c, ep.c) */

/* IOVAs the tests use: far from the MSI window Linux reserves at 0x08000000 on arm64. */
#define IOVA_BASE 0x40000000ULL
#define PAGE_SZ 4096ULL

struct ep {
	char bdf[32];
	char sysdir[160];   /* /sys/bus/pci/devices/<bdf> */
	int group;          /* IOMMU group number, -1 when none */
	uint16_t ats_cap;   /* config offsets of the extended capabilities, 0 when absent */
	uint16_t pasid_cap;
	int cfgfd;          /* sysfs config file */
	/* VFIO cdev + iommufd */
	int iommufd;
	int devfd;
	uint32_t dev_id;
	uint64_t vfio_cfg_off;
	bool vfio_cfg;      /* config writes go through VFIO (else sysfs) */
	/* BAR0 */
	volatile uint8_t *bar;
	size_t bar_size;
	/* What the case attached, so that the end-of-case cleanup can undo it visibly. */
	bool rid_attached;
	uint32_t pasid_attached; /* 0 when none */
};

/* Find the endpoint (by BDF, or the first 1b36:0120) and its capabilities; no driver change. */
int ep_find(struct ep *ep, const char *bdf);
/* ep_find + bind vfio-pci (nothing opened): the kernel probes the device into the IOMMU at
 * this point (with DT it has no group before a driver binds); ep->group is re-read. */
int ep_bind_vfio(struct ep *ep, const char *bdf);
/* ep_find + bind vfio-pci + open the cdev and /dev/iommu + BIND_IOMMUFD + map BAR0 +
 * reset the endpoint. The device is then in iommufd's blocked state until ep_attach. */
int ep_open_vfio(struct ep *ep, const char *bdf);
/* ep_find + unbind any driver + map BAR0 through sysfs resource0 (no DMA ownership taken). */
int ep_open_sysfs(struct ep *ep, const char *bdf);
void ep_close(struct ep *ep);

/* Config space */
int ep_cfg_read16(struct ep *ep, unsigned off, uint16_t *val);  /* sysfs: the real register */
int ep_cfg_write16(struct ep *ep, unsigned off, uint16_t val);
int ep_ats_enabled(struct ep *ep, bool *on);    /* ATS Control.Enable (bit 15) */
int ep_pasid_enabled(struct ep *ep, bool *on);  /* PASID Control.Enable (bit 0) */
int ep_bus_master(struct ep *ep, bool on);      /* Command: Memory Space + Bus Master */
const char *ep_driver(struct ep *ep, char *buf, size_t len); /* "" when none */
int ep_unbind_driver(struct ep *ep); /* unbind whatever driver holds the device */

/* iommufd objects */
int ep_ioas_alloc(struct ep *ep, uint32_t *ioas);
int ep_ioas_map(struct ep *ep, uint32_t ioas, void *va, uint64_t len, uint64_t iova);
int ep_ioas_unmap(struct ep *ep, uint32_t ioas, uint64_t iova, uint64_t len);
int ep_hwpt_alloc(struct ep *ep, uint32_t pt_id, uint32_t flags, uint32_t *hwpt);
int ep_destroy(struct ep *ep, uint32_t id);
/* Attach the RID to a HWPT/IOAS; a second call replaces the domain (hitless path). */
int ep_attach(struct ep *ep, uint32_t pt_id);
/* Detach the RID: the device goes to the blocked domain. */
int ep_detach(struct ep *ep);
/* ep_attach / ep_detach between attach-begin/attach-end markers (value i, label), so the
 * trace analyser sees every domain change of the RID, set-up and teardown included. */
int ep_attach_marked(struct ep *ep, uint32_t pt_id, uint64_t i, const char *label);
int ep_detach_marked(struct ep *ep, uint64_t i, const char *label);
/* End of a case (called by the harness in the case's child): stop the generator, clear Bus
 * Master, detach PASID and RID under markers. Undoing it here rather than at close() keeps
 * the domain changes inside marked windows for the analyser. */
void ep_case_cleanup(void);
/* PASID attach/replace/detach (EP_UNSUP when the uapi or kernel lacks it). */
int ep_attach_pasid(struct ep *ep, uint32_t pasid, uint32_t pt_id);
int ep_detach_pasid(struct ep *ep, uint32_t pasid);
/* The uapi these tests were built against has PASID attach. */
bool ep_pasid_uapi(void);
/* HWPT flag that makes a domain usable with PASIDs, 0 when the uapi has none. */
uint32_t ep_hwpt_pasid_flag(void);

/* A paging domain of its own: a zeroed buffer mapped at iova in a new IOAS, and a HWPT
 * allocated from that IOAS (hwpt_flags: IOMMU_HWPT_ALLOC_* flags). */
struct domain {
	uint32_t ioas, hwpt;
	void *buf;
	uint64_t iova, len;
};
int ep_domain(struct ep *ep, struct domain *d, uint64_t iova, uint64_t len, uint32_t hwpt_flags);

/* Anonymous, populated, zeroed, page-aligned memory for DMA. */
void *dma_buf(size_t len);
void dma_buf_free(void *p, size_t len);

/* Registers */
uint32_t ep_rd32(struct ep *ep, uint32_t off);
uint64_t ep_rd64(struct ep *ep, uint32_t off);
void ep_wr32(struct ep *ep, uint32_t off, uint32_t val);
void ep_wr64(struct ep *ep, uint32_t off, uint64_t val);
void ep_reset(struct ep *ep);
/* Record a (tag, value, label) marker in the model's trace. */
void ep_marker(struct ep *ep, uint32_t tag, uint64_t value, const char *label);

struct dma_desc {
	uint32_t op, flags, pasid;
	uint64_t src, dst, len, pattern;
};
struct dma_res {
	uint32_t status;
	uint64_t result;
};
/* Run one descriptor; EP_ERR only when DMA_STATUS never shows done. */
int ep_dma(struct ep *ep, const struct dma_desc *d, struct dma_res *r);
unsigned dma_err_code(uint32_t status);
const char *dma_err_name(unsigned code);

struct tg_cfg {
	uint64_t base, size, tag;
	uint32_t stride, rate, pasid;
	bool ats, use_pasid, readback;
};
struct tg_counters {
	uint64_t seq, writes, xlate_fail, aborts, ats_err, mismatch;
};
void ep_tg_start(struct ep *ep, const struct tg_cfg *c);
void ep_tg_stop(struct ep *ep);
/* Snapshot before an operation: TG_SEQ first, the outcome counters last (as close to the
 * operation as possible), so failures of records issued before the operation are counted. */
void ep_tg_read(struct ep *ep, struct tg_counters *c);
/* Snapshot after an operation returned: the outcome counters first, TG_SEQ last, so every
 * record numbered >= seq was issued after the counters were read (after the return). */
void ep_tg_read_ret(struct ep *ep, struct tg_counters *c);
uint64_t tg_failures(const struct tg_counters *c); /* xlate_fail + aborts + ats_err */
/* Wait until TG_SEQ >= target; EP_ERR (with the counters) on timeout. */
int ep_tg_wait_seq(struct ep *ep, uint64_t target, unsigned timeout_ms, struct tg_counters *c);
void tg_diag(const char *what, const struct tg_counters *c);

struct ep_counters {
	uint64_t ats_req, atc_hit, atc_miss, inv_req, inv_cpl, bm_drop, ats_drop, faults;
};
void ep_counters_read(struct ep *ep, struct ep_counters *c);
void counters_diag(const char *what, const struct ep_counters *c);

/* Traffic-generator records found in a buffer that the device sees at iova. */
struct tg_scan {
	uint64_t records;     /* slots holding a record (magic matches) */
	uint64_t max_seq;     /* valid when records > 0 */
	uint64_t max_seq_off; /* buffer offset of the record with max_seq */
	uint64_t max_seq_tag;
	uint64_t misplaced;   /* records whose iova field is not the slot's IOVA */
	uint64_t first_misplaced_off;
};
void tg_scan(const void *buf, uint64_t len, uint64_t iova, uint32_t stride, struct tg_scan *s);

#endif /* COSIM_H */
