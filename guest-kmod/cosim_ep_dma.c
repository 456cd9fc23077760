// SPDX-License-Identifier: MIT OR GPL-2.0
/*
 * cosim_ep_dma: a minimal kernel driver for cosim-pcie-ep. Its kdma cases make the
 * endpoint's DMA engine copy between buffers that the DMA API mapped, so that the DMA goes
 * through the default DMA domain the arm-smmu-v3 driver attached when this driver bound
 * (every other guest test drives the endpoint from userspace through VFIO/iommufd domains);
 * its kswitch cases switch the device between that default domain and unmanaged paging
 * domains of its own, as a kernel driver may, under generator traffic (see "kswitch" below).
 *
 * It has no device-ID table on purpose: nothing binds it by itself, so it never takes the
 * endpoint from vfio-pci. The test binds it with driver_override + drivers_probe.
 *
 * Each case is a debugfs file, /sys/kernel/debug/cosim_ep_dma/<bdf>/<case>; reading it runs
 * the case and returns one line:
 *   ok <case> domain=<type> len=<n> iova_src=0x.. pa_src=0x.. iova_dst=0x.. pa_dst=0x.. ...
 *   fail <case> <what went wrong, with the numbers> ...
 *   unsupported <case> <the kernel API it lacks>
 * pa_* is the CPU's physical address of the buffer's first byte, and *_walk the physical
 * address the domain's page table gives for the IOVA (they must agree); the IOVA differing
 * from both is what shows the SMMU translated.
 */
#include <linux/debugfs.h>
#include <linux/dma-map-ops.h>
#include <linux/dma-mapping.h>
#include <linux/io.h>
#include <linux/iommu.h>
#include <linux/iopoll.h>
#include <linux/ktime.h>
#include <linux/module.h>
#include <linux/mm.h>
#include <linux/mutex.h>
#include <linux/pci.h>
#include <linux/sched/signal.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <linux/version.h>
#include <linux/vmalloc.h>

/* Register map: generated from cosim/endpoint/regs.py (docs/endpoint.md). Kbuild adds
 * guest-tests/include to the include path. */
#include "cosim_ep.h"
/* The "sva" file's ioctls, shared with the guest tests. */
#include "cosim_kmod.h"

#define DRV_NAME "cosim_ep_dma"

/* Coherent buffers: four pages, so the copy crosses IOVA pages that need not be physically
 * contiguous (iommu-dma may back them with scattered pages). */
#define COHERENT_LEN (4 * PAGE_SIZE)
/* Streaming buffers: an unaligned start and a length ending mid-page, as real drivers map. */
#define STREAM_ALLOC (4 * PAGE_SIZE)
#define STREAM_OFF 0x40
#define STREAM_LEN (3 * PAGE_SIZE + 200)
/* The engine completes before the doorbell write returns; this only bounds a broken model. */
#define DMA_TIMEOUT_US 2000000

struct kdma {
	struct pci_dev *pdev;
	void __iomem *regs;
	struct dentry *dir;
	struct mutex lock; /* one descriptor in the engine's registers at a time */
};

static struct dentry *debug_root;

struct ep_cnt {
	u64 ats_req, atc_hit, atc_miss, inv_req, faults;
};

static void cnt_read(struct kdma *k, struct ep_cnt *c)
{
	c->ats_req = readq(k->regs + COSIM_EP_CNT_ATS_REQ);
	c->atc_hit = readq(k->regs + COSIM_EP_CNT_ATC_HIT);
	c->atc_miss = readq(k->regs + COSIM_EP_CNT_ATC_MISS);
	c->inv_req = readq(k->regs + COSIM_EP_CNT_INV_REQ);
	c->faults = readq(k->regs + COSIM_EP_CNT_FAULTS);
}

/*
 * Record a (tag, value, label) marker in the model's trace. Each case is bracketed by
 * test-begin and test-end, so the trace analyser bounds the previous test's attach windows
 * there and the case's DMA shows up under its name; a kswitch case also brackets each of its
 * domain switches by attach-begin/attach-end (value: the switch's number).
 */
static void marker_value(struct kdma *k, u32 tag, u64 value, const char *label)
{
	char buf[COSIM_EP_MARKER_LABEL_BYTES] = { 0 };
	u32 word;
	int i;

	strscpy(buf, label, sizeof(buf));
	for (i = 0; i < COSIM_EP_MARKER_LABEL_N; i++) {
		memcpy(&word, buf + 4 * i, sizeof(word));
		writel(word, k->regs + COSIM_EP_MARKER_LABEL + 4 * i);
	}
	writel(tag, k->regs + COSIM_EP_MARKER_TAG);
	writeq(value, k->regs + COSIM_EP_MARKER_VALUE);
}

static void marker(struct kdma *k, u32 tag, const char *label)
{
	marker_value(k, tag, 0, label);
}

/* Run one copy descriptor; returns DMA_STATUS (0 with -ETIMEDOUT when never done). */
static int run_copy(struct kdma *k, dma_addr_t src, dma_addr_t dst, size_t len, u32 flags,
		    u32 *status, u64 *result)
{
	int ret;

	writel(COSIM_EP_DMA_OP_COPY, k->regs + COSIM_EP_DMA_OP);
	writel(flags, k->regs + COSIM_EP_DMA_FLAGS);
	writeq(src, k->regs + COSIM_EP_DMA_SRC);
	writeq(dst, k->regs + COSIM_EP_DMA_DST);
	writeq(len, k->regs + COSIM_EP_DMA_LEN);
	writel(1, k->regs + COSIM_EP_DMA_DOORBELL);
	ret = readl_poll_timeout(k->regs + COSIM_EP_DMA_STATUS, *status,
				 *status & COSIM_EP_DMA_STATUS_DONE, 10, DMA_TIMEOUT_US);
	*result = readq(k->regs + COSIM_EP_DMA_RESULT);
	return ret;
}

/* The CPU's physical address of a kernel buffer: coherent allocations through iommu-dma
 * may be vmap'd, everything else here is in the linear map. */
static phys_addr_t cpu_pa(const void *va)
{
	if (is_vmalloc_addr(va))
		return page_to_phys(vmalloc_to_page(va)) + offset_in_page(va);
	return virt_to_phys(va);
}

static const char *domain_type(struct iommu_domain *d)
{
	if (!d)
		return "none";
	switch (d->type) {
	case IOMMU_DOMAIN_DMA:
		return "DMA";
	case IOMMU_DOMAIN_DMA_FQ:
		return "DMA-FQ";
	case IOMMU_DOMAIN_IDENTITY:
		return "identity";
	case IOMMU_DOMAIN_BLOCKED:
		return "blocked";
	case IOMMU_DOMAIN_UNMANAGED:
		return "unmanaged";
	default:
		return "other";
	}
}

/* The physical address the domain's page table gives for iova (what the SMMU should use). */
static phys_addr_t walk_pa(struct kdma *k, dma_addr_t iova)
{
	struct iommu_domain *d = iommu_get_domain_for_dev(&k->pdev->dev);

	return d ? iommu_iova_to_phys(d, iova) : 0;
}

/* Page boundaries inside a buffer where the next page is not physically adjacent: > 0
 * shows one contiguous IOVA range over scattered pages (translation per page, not an
 * offset). */
static unsigned int phys_breaks(const void *va, size_t len)
{
	unsigned int n = 0;
	size_t off;

	for (off = PAGE_SIZE; off < len; off += PAGE_SIZE)
		if (cpu_pa(va + off) != cpu_pa(va + off - PAGE_SIZE) + PAGE_SIZE)
			n++;
	return n;
}

static void fill_pattern(u8 *p, size_t len, u32 seed)
{
	size_t i;

	for (i = 0; i < len; i++)
		p[i] = (u8)((i * 131 + (i >> 8) * 7 + seed) ^ (seed >> 8));
}

/* One copy to run and judge. */
struct copy {
	const char *name;
	u32 flags;                   /* DMA_FLAGS */
	u8 *src, *dst;               /* CPU addresses */
	dma_addr_t iova_src, iova_dst;
	size_t len;
	u8 *dst_buf;                 /* the allocation holding dst: bytes outside dst stay 0 */
	size_t dst_buf_len;
	bool streaming;              /* dst must be synced for the CPU before it is read */
};

static size_t first_nonzero(const u8 *p, size_t len)
{
	size_t i;

	for (i = 0; i < len && !p[i]; i++)
		;
	return i;
}

/*
 * Run the copy and judge it: DMA_STATUS done without error, dst equal to src, nothing
 * written around dst, no new fault counted by the endpoint, and for ATS at least one ATS
 * request or ATC hit. Prints the result line with the addresses that show the translation.
 */
static void run_and_judge(struct seq_file *m, struct kdma *k, const struct copy *c)
{
	struct device *dev = &k->pdev->dev;
	struct iommu_domain *dom = iommu_get_domain_for_dev(dev);
	phys_addr_t pa_src = cpu_pa(c->src), pa_dst = cpu_pa(c->dst);
	phys_addr_t walk_src = walk_pa(k, c->iova_src), walk_dst = walk_pa(k, c->iova_dst);
	size_t head = c->dst - c->dst_buf, tail = c->dst_buf_len - head - c->len, off;
	struct ep_cnt before, after;
	u32 status = 0;
	u64 result = 0;
	int ret;

	cnt_read(k, &before);
	ret = run_copy(k, c->iova_src, c->iova_dst, c->len, c->flags, &status, &result);
	cnt_read(k, &after);
	if (c->streaming)
		dma_sync_single_for_cpu(dev, c->iova_dst, c->len, DMA_FROM_DEVICE);

	if (ret) {
		seq_printf(m, "fail %s DMA_STATUS 0x%x never showed done (%u us)", c->name, status,
			   DMA_TIMEOUT_US);
	} else if (status & COSIM_EP_DMA_STATUS_ERROR) {
		seq_printf(m, "fail %s DMA_STATUS 0x%x error code %u after %llu bytes", c->name,
			   status,
			   (status >> COSIM_EP_DMA_STATUS_ERR_SHIFT) & COSIM_EP_DMA_STATUS_ERR_MASK,
			   result);
	} else if (memcmp(c->src, c->dst, c->len)) {
		for (off = 0; c->src[off] == c->dst[off]; off++)
			;
		seq_printf(m, "fail %s destination differs from source at offset %zu"
			   " (0x%02x, expected 0x%02x)", c->name, off, c->dst[off], c->src[off]);
	} else if ((off = first_nonzero(c->dst_buf, head)) < head) {
		seq_printf(m, "fail %s byte written %zu bytes before the destination", c->name,
			   head - off);
	} else if ((off = first_nonzero(c->dst + c->len, tail)) < tail) {
		seq_printf(m, "fail %s byte written %zu bytes after the destination's end", c->name,
			   off);
	} else if (after.faults != before.faults) {
		seq_printf(m, "fail %s CNT_FAULTS went %llu -> %llu", c->name, before.faults,
			   after.faults);
	} else if ((c->flags & COSIM_EP_DMA_FLAG_ATS) && after.ats_req == before.ats_req &&
		   after.atc_hit == before.atc_hit) {
		seq_printf(m, "fail %s ATS copy made no ATS request and had no ATC hit", c->name);
	} else if (walk_src != pa_src || walk_dst != pa_dst) {
		seq_printf(m, "fail %s the domain's page table does not map the IOVAs to the buffers",
			   c->name);
	} else {
		seq_printf(m, "ok %s", c->name);
	}
	seq_printf(m, " domain=%s len=%zu iova_src=%pad pa_src=%pa src_walk=%pa iova_dst=%pad"
		   " pa_dst=%pa dst_walk=%pa dst_phys_breaks=%u status=0x%x ats_req=%llu"
		   " atc_hit=%llu atc_miss=%llu faults=%llu\n",
		   domain_type(dom), c->len, &c->iova_src, &pa_src, &walk_src, &c->iova_dst,
		   &pa_dst, &walk_dst, phys_breaks(c->dst, c->len), status,
		   after.ats_req - before.ats_req, after.atc_hit - before.atc_hit,
		   after.atc_miss - before.atc_miss, after.faults - before.faults);
}

static int copy_coherent(struct seq_file *m, const char *name, u32 flags)
{
	struct kdma *k = m->private;
	struct device *dev = &k->pdev->dev;
	struct copy c = { .name = name, .flags = flags, .len = COHERENT_LEN };

	mutex_lock(&k->lock);
	marker(k, COSIM_EP_MARKER_TAG_TEST_BEGIN, name);
	c.src = dma_alloc_coherent(dev, COHERENT_LEN, &c.iova_src, GFP_KERNEL);
	c.dst = dma_alloc_coherent(dev, COHERENT_LEN, &c.iova_dst, GFP_KERNEL);
	if (!c.src || !c.dst) {
		seq_printf(m, "fail %s dma_alloc_coherent(%lu) returned NULL\n", name,
			   COHERENT_LEN);
	} else {
		fill_pattern(c.src, COHERENT_LEN, 0x5a17);
		memset(c.dst, 0, COHERENT_LEN);
		c.dst_buf = c.dst;
		c.dst_buf_len = COHERENT_LEN;
		run_and_judge(m, k, &c);
	}
	if (c.dst)
		dma_free_coherent(dev, COHERENT_LEN, c.dst, c.iova_dst);
	if (c.src)
		dma_free_coherent(dev, COHERENT_LEN, c.src, c.iova_src);
	marker(k, COSIM_EP_MARKER_TAG_TEST_END, name);
	mutex_unlock(&k->lock);
	return 0;
}

static int copy_streaming(struct seq_file *m, const char *name, u32 flags)
{
	struct kdma *k = m->private;
	struct device *dev = &k->pdev->dev;
	struct copy c = { .name = name, .flags = flags, .len = STREAM_LEN, .streaming = true,
			  .dst_buf_len = STREAM_ALLOC };
	u8 *sbuf;

	mutex_lock(&k->lock);
	marker(k, COSIM_EP_MARKER_TAG_TEST_BEGIN, name);
	sbuf = kmalloc(STREAM_ALLOC, GFP_KERNEL);
	c.dst_buf = kzalloc(STREAM_ALLOC, GFP_KERNEL);
	if (!sbuf || !c.dst_buf) {
		seq_printf(m, "fail %s kmalloc(%lu) returned NULL\n", name, STREAM_ALLOC);
		goto out;
	}
	c.src = sbuf + STREAM_OFF;
	c.dst = c.dst_buf + STREAM_OFF;
	fill_pattern(c.src, STREAM_LEN, 0xc0de);
	c.iova_src = dma_map_single(dev, c.src, STREAM_LEN, DMA_TO_DEVICE);
	if (dma_mapping_error(dev, c.iova_src)) {
		seq_printf(m, "fail %s dma_map_single(src, %lu) failed\n", name, STREAM_LEN);
		goto out;
	}
	c.iova_dst = dma_map_single(dev, c.dst, STREAM_LEN, DMA_FROM_DEVICE);
	if (dma_mapping_error(dev, c.iova_dst)) {
		seq_printf(m, "fail %s dma_map_single(dst, %lu) failed\n", name, STREAM_LEN);
		dma_unmap_single(dev, c.iova_src, STREAM_LEN, DMA_TO_DEVICE);
		goto out;
	}
	/* Judged while mapped: the page-table walk in the report needs the mappings. */
	run_and_judge(m, k, &c);
	dma_unmap_single(dev, c.iova_dst, STREAM_LEN, DMA_FROM_DEVICE);
	dma_unmap_single(dev, c.iova_src, STREAM_LEN, DMA_TO_DEVICE);
out:
	kfree(c.dst_buf);
	kfree(sbuf);
	marker(k, COSIM_EP_MARKER_TAG_TEST_END, name);
	mutex_unlock(&k->lock);
	return 0;
}

static int copy_coherent_untranslated_show(struct seq_file *m, void *v)
{
	return copy_coherent(m, "copy_coherent_untranslated", 0);
}
DEFINE_SHOW_ATTRIBUTE(copy_coherent_untranslated);

static int copy_coherent_ats_show(struct seq_file *m, void *v)
{
	return copy_coherent(m, "copy_coherent_ats", COSIM_EP_DMA_FLAG_ATS);
}
DEFINE_SHOW_ATTRIBUTE(copy_coherent_ats);

static int copy_streaming_untranslated_show(struct seq_file *m, void *v)
{
	return copy_streaming(m, "copy_streaming_untranslated", 0);
}
DEFINE_SHOW_ATTRIBUTE(copy_streaming_untranslated);

static int copy_streaming_ats_show(struct seq_file *m, void *v)
{
	return copy_streaming(m, "copy_streaming_ats", COSIM_EP_DMA_FLAG_ATS);
}
DEFINE_SHOW_ATTRIBUTE(copy_streaming_ats);

/*
 * kswitch: the driver switches its own device between domains while the endpoint's traffic
 * generator runs, each switch bracketed by attach markers:
 *   dmaswitch_*       the group's default DMA domain <-> an unmanaged paging domain that
 *                     maps the traffic buffer's IOVAs to the same pages;
 *   identityswitch_*  the default identity domain (the test sets the group's type before
 *                     binding) <-> an unmanaged paging domain mapping IOVA == PA for the
 *                     buffer, so both translate the traffic.
 * The paging domain comes in with iommu_attach_device() and goes with
 * iommu_detach_device() (the group's default domain back). *_ats runs the generator with
 * ATS: the switches then toggle ATS Enable (identity) or invalidate the ATC (DMA), and a
 * driver that orders ATS Enable and STE.EATS wrongly (IHI 0070 3.9.2) makes the device's ATS
 * requests meet an STE that refuses them inside the switch, at an address both domains map.
 *
 * After each switch returns the new state must hold: no translation failure or abort is
 * counted from the return on; records land in their slots (or, ATS traffic under identity,
 * where the driver keeps ATS Enable clear, every record is refused by the device itself:
 * TG_ATS_ERR only); and one DMA-engine copy inside the buffer lands. Failures inside the
 * switch call are counted and reported, not judged: which of them break an invariant is the
 * trace analysis's to say.
 */
static unsigned int switch_count = 100;
module_param(switch_count, uint, 0644);
MODULE_PARM_DESC(switch_count, "kswitch: domain switches each way per case");
static unsigned int switch_settle = 8;
module_param(switch_settle, uint, 0644);
MODULE_PARM_DESC(switch_settle, "kswitch: generator records to wait for after a switch");

/*
 * The generator writes one record per page over twice as many pages as the device's ATC
 * holds (ATC_SIZE), so with ATS every record misses and sends a Translation Request: a switch
 * window then always meets fresh ATS requests, not only hits on entries cached before it
 * (an STE that refuses ATS shows in UR completions, whatever the ATC held).
 */
#define KSW_TG_PAGES_MIN 8
#define KSW_TG_PAGES_MAX 256
#define KSW_STRIDE PAGE_SIZE
#define KSW_RATE 4
#define KSW_WAIT_US 2000000

/* iommu_paging_domain_alloc() is Linux 6.11's (paging_domain_alloc() below); iommu_map()
 * takes a gfp since 6.3. */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 3, 0)
#define ksw_iommu_map(d, iova, pa, size, prot) iommu_map(d, iova, pa, size, prot, GFP_KERNEL)
#else
#define ksw_iommu_map(d, iova, pa, size, prot) iommu_map(d, iova, pa, size, prot)
#endif

struct tg_cnt {
	u64 seq, writes, xlate_fail, aborts, ats_err;
};

/* Before an operation: TG_SEQ first, the outcome counters as close to it as possible. */
static void tg_read(struct kdma *k, struct tg_cnt *c)
{
	c->seq = readq(k->regs + COSIM_EP_TG_SEQ);
	c->writes = readq(k->regs + COSIM_EP_TG_WRITES);
	c->xlate_fail = readq(k->regs + COSIM_EP_TG_XLATE_FAIL);
	c->aborts = readq(k->regs + COSIM_EP_TG_ABORTS);
	c->ats_err = readq(k->regs + COSIM_EP_TG_ATS_ERR);
}

/* After an operation returned: outcomes first, TG_SEQ last, so every record numbered >= seq
 * was issued after the return. */
static void tg_read_ret(struct kdma *k, struct tg_cnt *c)
{
	c->writes = readq(k->regs + COSIM_EP_TG_WRITES);
	c->xlate_fail = readq(k->regs + COSIM_EP_TG_XLATE_FAIL);
	c->aborts = readq(k->regs + COSIM_EP_TG_ABORTS);
	c->ats_err = readq(k->regs + COSIM_EP_TG_ATS_ERR);
	c->seq = readq(k->regs + COSIM_EP_TG_SEQ);
}

/* Translation failures and aborts: what the SMMU refused (ATS_ERR is the device's own). */
static u64 tg_refused(const struct tg_cnt *c)
{
	return c->xlate_fail + c->aborts;
}

struct ksw {
	struct kdma *k;
	const char *name;
	char msg[512];          /* why the case failed (ksw_fail) */
	/* The trace label of the case: its family (the TAP name's first word, which tells the
	 * DMA cases from the identity ones in the analysis) and " ats" for ATS traffic. */
	char label[COSIM_EP_MARKER_LABEL_BYTES];
	bool ats, identity;
	struct iommu_domain *def, *paging;
	bool attached;          /* the paging domain is the device's */
	unsigned int tg_pages;  /* the generator's window; then one source, one destination page */
	size_t tg_len, len;
	u8 *buf;                /* len bytes, dma_alloc_coherent */
	dma_addr_t iova;
	/* The generator's window as the CPU reads it and as the device addresses it: the first
	 * tg_len bytes of buf at iova, or (sva) a process's pinned pages at their VA through
	 * the bound PASID; the engine's two pages follow at buf + eng_off. */
	const u8 *tg_view;
	u64 tg_addr;
	size_t eng_off;
	bool sva;
	u32 pasid;
	struct tg_cnt ret;      /* at the last switch's return (the state's start) */
	u64 during_refused, during_ats_err, landed, dropped;
	int ats_paging, ats_default; /* ATS Control.Enable seen in each state, -1 unseen */
	bool drops;             /* the current state's ATS traffic is refused by the device */
	bool failed;
};

static __printf(2, 3) void ksw_fail(struct ksw *s, const char *fmt, ...)
{
	va_list ap;

	if (s->failed)
		return;
	s->failed = true;
	va_start(ap, fmt);
	vscnprintf(s->msg, sizeof(s->msg), fmt, ap);
	va_end(ap);
}

/* ATS Control.Enable as the function's config space holds it (-1: no ATS capability). */
static int ats_enable(struct pci_dev *pdev)
{
	int pos = pci_find_ext_capability(pdev, PCI_EXT_CAP_ID_ATS);
	u16 ctrl = 0;

	if (!pos)
		return -1;
	pci_read_config_word(pdev, pos + PCI_ATS_CTRL, &ctrl);
	return !!(ctrl & PCI_ATS_CTRL_ENABLE);
}

struct tg_rec {
	u64 magic, seq, iova, tag;
};

/* The device may be writing the slot while it is read: read until two reads agree. */
static void read_rec(const u8 *slot, struct tg_rec *r)
{
	const u64 *q = (const u64 *)slot;
	struct tg_rec again;
	int i;

	for (i = 0; i < 4; i++) {
		r->magic = READ_ONCE(q[0]);
		r->seq = READ_ONCE(q[1]);
		r->iova = READ_ONCE(q[2]);
		r->tag = READ_ONCE(q[3]);
		again.magic = READ_ONCE(q[0]);
		again.seq = READ_ONCE(q[1]);
		again.iova = READ_ONCE(q[2]);
		again.tag = READ_ONCE(q[3]);
		if (!memcmp(r, &again, sizeof(again)))
			return;
	}
}

/* Records numbered >= from in the window; *misplaced counts those not in their own slot. */
static unsigned int records_since(struct ksw *s, u64 from, unsigned int *misplaced)
{
	unsigned int n = 0;
	size_t off;
	struct tg_rec r;

	*misplaced = 0;
	for (off = 0; off + COSIM_EP_TG_RECORD_SIZE <= s->tg_len; off += KSW_STRIDE) {
		read_rec(s->tg_view + off, &r);
		if (r.magic != COSIM_EP_TG_RECORD_MAGIC || r.seq < from)
			continue;
		n++;
		if (r.iova != s->tg_addr + off)
			(*misplaced)++;
	}
	return n;
}

/* Wait until the generator has issued `more` records since the state began. */
static int wait_records(struct ksw *s, u64 more, struct tg_cnt *now)
{
	ktime_t end = ktime_add_us(ktime_get(), KSW_WAIT_US);

	for (;;) {
		tg_read(s->k, now);
		if (now->seq >= s->ret.seq + more)
			return 0;
		if (ktime_after(ktime_get(), end) || fatal_signal_pending(current))
			return -ETIMEDOUT;
		usleep_range(50, 100);
	}
}

/* Between the state's start (the last return) and `to`: nothing refused by the SMMU, and no
 * ATS error unless the state is one where the device itself refuses its ATS traffic. */
static void judge_window(struct ksw *s, unsigned int i, const char *state,
			 const struct tg_cnt *to, bool drops)
{
	u64 refused = tg_refused(to) - tg_refused(&s->ret);
	u64 ats_err = to->ats_err - s->ret.ats_err;

	if (refused || (ats_err && !drops))
		ksw_fail(s, "%u %s: after the switch returned, TG_XLATE_FAIL +%llu TG_ABORTS +%llu"
			 " TG_ATS_ERR +%llu (TG_SEQ %llu -> %llu)", i, state,
			 to->xlate_fail - s->ret.xlate_fail, to->aborts - s->ret.aborts, ats_err,
			 s->ret.seq, to->seq);
}

/* One DMA-engine copy inside the buffer, src page -> dst page, judged byte for byte. */
static void engine_copy(struct ksw *s, unsigned int i, const char *state, bool ats)
{
	u8 *src = s->buf + s->eng_off, *dst = src + PAGE_SIZE;
	u32 status = 0;
	u64 result = 0;
	int ret;

	fill_pattern(src, PAGE_SIZE, 0x3c00 + i);
	memset(dst, 0, PAGE_SIZE);
	ret = run_copy(s->k, s->iova + s->eng_off, s->iova + s->eng_off + PAGE_SIZE, PAGE_SIZE,
		       ats ? COSIM_EP_DMA_FLAG_ATS : 0, &status, &result);
	if (ret || (status & COSIM_EP_DMA_STATUS_ERROR))
		ksw_fail(s, "%u %s: engine copy (%s) DMA_STATUS 0x%x error code %u after %llu bytes",
			 i, state, ats ? "ATS" : "untranslated", status,
			 (status >> COSIM_EP_DMA_STATUS_ERR_SHIFT) & COSIM_EP_DMA_STATUS_ERR_MASK,
			 result);
	else if (memcmp(src, dst, PAGE_SIZE))
		ksw_fail(s, "%u %s: engine copy (%s) done but the destination differs from the "
			 "source", i, state, ats ? "ATS" : "untranslated");
}

/*
 * The state the device is in since the last switch returned (s->ret): ATS Enable as the
 * driver must leave it (set for a paging domain, clear for identity), generator records
 * landing in their slots or, for ATS traffic under identity, refused by the device, and an
 * engine copy that lands.
 */
static void judge_state(struct ksw *s, unsigned int i, bool paging)
{
	const char *state = paging ? "paging" : (s->identity ? "identity" : "DMA");
	int ats_on = ats_enable(s->k->pdev);
	/* A bound SVA PASID relies on ATS: the driver must keep it on under identity too. */
	bool want_ats = paging || !s->identity || s->sva;
	bool drops = s->ats && !ats_on;
	unsigned int n, misplaced;
	struct tg_cnt now;

	s->drops = drops;
	if (paging)
		s->ats_paging = ats_on;
	else
		s->ats_default = ats_on;
	if (ats_on >= 0 && ats_on != want_ats) {
		ksw_fail(s, "%u %s: ATS Control.Enable is %d, expected %d", i, state, ats_on,
			 want_ats);
		return;
	}
	if (wait_records(s, switch_settle, &now)) {
		ksw_fail(s, "%u %s: the generator stalled at TG_SEQ %llu (waiting for %llu)", i,
			 state, now.seq, s->ret.seq + switch_settle);
		return;
	}
	judge_window(s, i, state, &now, drops);
	if (s->failed)
		return;
	n = records_since(s, s->ret.seq, &misplaced);
	if (drops) {
		if (n || now.writes != s->ret.writes)
			ksw_fail(s, "%u %s: ATS Enable is clear, yet %u records (TG_WRITES +%llu) "
				 "landed after the switch returned", i, state, n,
				 now.writes - s->ret.writes);
		else if (now.ats_err == s->ret.ats_err)
			ksw_fail(s, "%u %s: %u ATS records issued with ATS Enable clear but no "
				 "TG_ATS_ERR counted", i, state, switch_settle);
		s->dropped += now.ats_err - s->ret.ats_err;
	} else if (!n) {
		ksw_fail(s, "%u %s: no record numbered >= %llu landed (TG_SEQ %llu, TG_WRITES "
			 "+%llu)", i, state, s->ret.seq, now.seq, now.writes - s->ret.writes);
	} else if (misplaced) {
		ksw_fail(s, "%u %s: %u of %u records are not in their own slot", i, state,
			 misplaced, n);
	} else {
		s->landed += n;
	}
	if (!s->failed)
		engine_copy(s, i, state, s->ats && ats_on > 0);
}

/* One switch under markers; the window before it (the previous state) is judged first. */
static void do_switch(struct ksw *s, unsigned int i, bool to_paging)
{
	struct device *dev = &s->k->pdev->dev;
	const char *label = to_paging ? (s->identity ? "identity->paging" : "DMA->paging")
				      : (s->identity ? "paging->identity" : "paging->DMA");
	struct tg_cnt before, ret;
	int rc = 0;

	/* The records' tag tells which switch they followed. */
	writeq(i, s->k->regs + COSIM_EP_TG_TAG);
	tg_read(s->k, &before);
	judge_window(s, i, to_paging ? "default state" : "paging state", &before, s->drops);
	if (s->failed)
		return;
	marker_value(s->k, COSIM_EP_MARKER_TAG_ATTACH_BEGIN, i, label);
	if (to_paging)
		rc = iommu_attach_device(s->paging, dev);
	else
		iommu_detach_device(s->paging, dev);
	tg_read_ret(s->k, &ret);
	marker_value(s->k, COSIM_EP_MARKER_TAG_ATTACH_END, i, label);
	if (rc) {
		ksw_fail(s, "%u %s: iommu_attach_device() returned %d", i, label, rc);
		return;
	}
	s->attached = to_paging;
	if (iommu_get_domain_for_dev(dev) != (to_paging ? s->paging : s->def)) {
		ksw_fail(s, "%u %s: the device's domain is %s afterwards", i, label,
			 domain_type(iommu_get_domain_for_dev(dev)));
		return;
	}
	s->during_refused += tg_refused(&ret) - tg_refused(&before);
	s->during_ats_err += ret.ats_err - before.ats_err;
	s->ret = ret;
}

/* Map the buffer into the paging domain: each page at its IOVA, to the page the default
 * domain gives for it (identity: IOVA == PA), with the attributes iommu-dma would use. */
static int map_buffer(struct ksw *s)
{
	struct device *dev = &s->k->pdev->dev;
	int prot = IOMMU_READ | IOMMU_WRITE | (dev_is_dma_coherent(dev) ? IOMMU_CACHE : 0);
	size_t off;
	int rc;

	for (off = 0; off < s->len; off += PAGE_SIZE) {
		phys_addr_t pa = cpu_pa(s->buf + off);
		phys_addr_t walk = s->identity ? s->iova + off
					       : iommu_iova_to_phys(s->def, s->iova + off);

		if (walk != pa) {
			ksw_fail(s, "the default domain gives PA %pa for IOVA %pad + 0x%zx, the CPU "
				 "has the page at %pa", &walk, &s->iova, off, &pa);
			return -EINVAL;
		}
		rc = ksw_iommu_map(s->paging, s->iova + off, pa, PAGE_SIZE, prot);
		if (rc) {
			ksw_fail(s, "iommu_map(IOVA %pad + 0x%zx -> %pa) returned %d", &s->iova, off,
				 &pa, rc);
			return rc;
		}
	}
	return 0;
}

static struct iommu_domain *paging_domain_alloc(struct device *dev)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 11, 0)
	struct iommu_domain *d = iommu_paging_domain_alloc(dev);

	return IS_ERR(d) ? NULL : d;
#else
	return iommu_domain_alloc(dev->bus);
#endif
}

static void kswitch_run(struct ksw *s)
{
	struct device *dev = &s->k->pdev->dev;
	const char *want = s->identity ? "identity" : "DMA";
	struct tg_cnt end;
	unsigned int i;
	u32 ctrl = COSIM_EP_TG_CTRL_RUN | (s->ats ? COSIM_EP_TG_CTRL_ATS : 0);

	s->def = iommu_get_domain_for_dev(dev);
	if (!s->def || (s->identity ? s->def->type != IOMMU_DOMAIN_IDENTITY
				    : !iommu_is_dma_domain(s->def))) {
		ksw_fail(s, "the device's default domain is %s; the case needs %s (the test sets "
			 "the group's type before binding)", domain_type(s->def), want);
		return;
	}
	if (!s->sva) {
		s->tg_pages = clamp_t(unsigned int, 2 * readl(s->k->regs + COSIM_EP_ATC_SIZE),
				      KSW_TG_PAGES_MIN, KSW_TG_PAGES_MAX);
		s->tg_len = s->tg_pages * PAGE_SIZE;
		s->eng_off = s->tg_len;
	}
	s->len = s->eng_off + 2 * PAGE_SIZE;
	s->buf = dma_alloc_coherent(dev, s->len, &s->iova, GFP_KERNEL);
	if (!s->buf) {
		ksw_fail(s, "dma_alloc_coherent(%zu) returned NULL", s->len);
		return;
	}
	memset(s->buf, 0, s->len);
	s->paging = paging_domain_alloc(dev);
	if (!s->paging) {
		ksw_fail(s, "no unmanaged paging domain for the device");
		return;
	}
#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 11, 0)
	{
		/* A domain from iommu_domain_alloc() gets its page tables at its first attach
		 * (6.1: arm_smmu_domain_finalise() in arm_smmu_attach_dev()); until then
		 * iommu_map() has nothing to map into (-ENODEV). Attach it once and back before
		 * any traffic runs: two driver windows with no DMA in them. */
		int rc;

		marker_value(s->k, COSIM_EP_MARKER_TAG_ATTACH_BEGIN, 0, "setup: finalise domain");
		rc = iommu_attach_device(s->paging, dev);
		if (!rc)
			iommu_detach_device(s->paging, dev);
		marker_value(s->k, COSIM_EP_MARKER_TAG_ATTACH_END, 0, "setup: finalise domain");
		if (rc) {
			ksw_fail(s, "setup: iommu_attach_device() returned %d", rc);
			return;
		}
	}
#endif
	if (map_buffer(s))
		return;
	if (!s->sva) {
		s->tg_view = s->buf;
		s->tg_addr = s->iova;
	} else {
		ctrl |= COSIM_EP_TG_CTRL_PASID;
		writel(s->pasid, s->k->regs + COSIM_EP_TG_PASID);
	}

	marker_value(s->k, COSIM_EP_MARKER_TAG_TEST_BEGIN, switch_count, s->label);
	writeq(s->tg_addr, s->k->regs + COSIM_EP_TG_BASE);
	writeq(s->tg_len, s->k->regs + COSIM_EP_TG_SIZE);
	writel(KSW_STRIDE, s->k->regs + COSIM_EP_TG_STRIDE);
	writel(KSW_RATE, s->k->regs + COSIM_EP_TG_RATE);
	writeq(0, s->k->regs + COSIM_EP_TG_TAG);
	writel(ctrl, s->k->regs + COSIM_EP_TG_CTRL);
	tg_read_ret(s->k, &s->ret);
	judge_state(s, 0, false);
	for (i = 1; i <= switch_count && !s->failed; i++) {
		if (fatal_signal_pending(current)) {
			ksw_fail(s, "%u: interrupted", i);
			break;
		}
		do_switch(s, i, true);
		if (!s->failed)
			judge_state(s, i, true);
		if (!s->failed)
			do_switch(s, i, false);
		if (!s->failed)
			judge_state(s, i, false);
	}
	if (!s->failed) {
		tg_read(s->k, &end);
		judge_window(s, switch_count, "last state", &end, s->drops);
	}
	writel(0, s->k->regs + COSIM_EP_TG_CTRL);
	/* Whatever failed, the device leaves in its default domain, visibly. */
	if (s->attached) {
		marker_value(s->k, COSIM_EP_MARKER_TAG_ATTACH_BEGIN, 0, "cleanup: detach");
		iommu_detach_device(s->paging, dev);
		marker_value(s->k, COSIM_EP_MARKER_TAG_ATTACH_END, 0, "cleanup: detach");
		s->attached = false;
	}
	marker_value(s->k, COSIM_EP_MARKER_TAG_TEST_END, switch_count, s->label);
}

/* Run the case (k->lock held) and print its result line into out. */
static void kswitch_line(struct ksw *s, char *out, size_t len)
{
	struct device *dev = &s->k->pdev->dev;
	struct ep_cnt before, after;
	size_t n = 0;

	snprintf(s->label, sizeof(s->label), "%s%s%s", s->sva ? "sva" : "",
		 s->identity ? "identityswitch" : "dmaswitch", s->ats ? " ats" : "");
	cnt_read(s->k, &before);
	kswitch_run(s);
	cnt_read(s->k, &after);
	if (s->paging)
		iommu_domain_free(s->paging);
	if (s->buf)
		dma_free_coherent(dev, s->len, s->buf, s->iova);
	if (s->failed)
		n = scnprintf(out, len, "fail %s %s", s->name, s->msg);
	else
		n = scnprintf(out, len, "ok %s", s->name);
	scnprintf(out + n, len - n,
		  " switches=%u window_pages=%u default=%s ats_default=%d ats_paging=%d"
		  " iova=%pad landed=%llu"
		  " dropped=%llu during_refused=%llu during_ats_err=%llu ats_req=%llu atc_hit=%llu"
		  " inv_req=%llu faults=%llu\n", switch_count, s->tg_pages, domain_type(s->def),
		  s->ats_default,
		  s->ats_paging, &s->iova, s->landed, s->dropped, s->during_refused,
		  s->during_ats_err, after.ats_req - before.ats_req, after.atc_hit - before.atc_hit,
		  after.inv_req - before.inv_req, after.faults - before.faults);
}

static int kswitch(struct seq_file *m, const char *name, bool identity, bool ats)
{
	struct kdma *k = m->private;
	struct ksw *s;
	char *line;

	s = kzalloc(sizeof(*s), GFP_KERNEL);
	line = kzalloc(COSIM_KMOD_LINE_BYTES, GFP_KERNEL);
	if (!s || !line) {
		kfree(s);
		kfree(line);
		return -ENOMEM;
	}
	*s = (struct ksw){ .k = k, .name = name, .ats = ats, .identity = identity,
			   .ats_paging = -1, .ats_default = -1 };
	mutex_lock(&k->lock);
	kswitch_line(s, line, COSIM_KMOD_LINE_BYTES);
	mutex_unlock(&k->lock);
	seq_puts(m, line);
	kfree(line);
	kfree(s);
	return 0;
}

#define KSWITCH_CASE(fn, identity, ats)                                                  \
	static int fn##_show(struct seq_file *m, void *v)                                \
	{                                                                                \
		return kswitch(m, #fn, identity, ats);                                   \
	}                                                                                \
	DEFINE_SHOW_ATTRIBUTE(fn)

KSWITCH_CASE(dmaswitch_untranslated, false, false);
KSWITCH_CASE(dmaswitch_ats, false, true);
KSWITCH_CASE(identityswitch_untranslated, true, false);
KSWITCH_CASE(identityswitch_ats, true, true);

/*
 * sva: shared virtual addressing for the calling process (cosim_kmod.h). The process binds
 * its address space, gets the PASID, and drives the endpoint with it and its own virtual
 * addresses (through BAR0, mapped by sysfs); SWITCH runs a kswitch case whose generator
 * sweeps the process's buffer through that PASID while the RID's domain changes under it:
 * the seed's scenario, in which turning ATS off for the RID's change would break the PASID.
 * The buffer's pages are pinned and mapped into the kernel for the case only, to read the
 * records the device wrote; the device reaches them through the process's page tables.
 */
/* iommu_dev_enable_feature(IOMMU_DEV_FEAT_SVA) is required before a bind up to Linux 6.15;
 * 6.16 dropped the feature API (the driver enables SVA on bind). */
#define SVA_FEATURE_API (LINUX_VERSION_CODE < KERNEL_VERSION(6, 16, 0))
#define SVA_PAGES_MAX 512

struct sva_file {
	struct kdma *k;
	struct mutex lock;       /* one operation of this bond at a time */
	struct iommu_sva *handle;
	u32 pasid;
	bool feature;            /* this file enabled the SVA feature */
};

static int sva_open(struct inode *inode, struct file *f)
{
	struct sva_file *sf = kzalloc(sizeof(*sf), GFP_KERNEL);

	if (!sf)
		return -ENOMEM;
	sf->k = inode->i_private;
	mutex_init(&sf->lock);
	f->private_data = sf;
	return 0;
}

/* The unbind under PASID markers (the bind has none: its PASID is known only once it
 * returned; the driver-event probe brackets both). */
static void sva_unbind(struct sva_file *sf)
{
	if (sf->handle) {
		marker_value(sf->k, COSIM_EP_MARKER_TAG_PASID_ATTACH_BEGIN, sf->pasid,
			     "sva unbind");
		iommu_sva_unbind_device(sf->handle);
		marker_value(sf->k, COSIM_EP_MARKER_TAG_PASID_ATTACH_END, sf->pasid,
			     "sva unbind");
		sf->handle = NULL;
	}
#if SVA_FEATURE_API
	if (sf->feature)
		iommu_dev_disable_feature(&sf->k->pdev->dev, IOMMU_DEV_FEAT_SVA);
#endif
	sf->feature = false;
}

static long sva_bind(struct sva_file *sf, void __user *arg)
{
	struct device *dev = &sf->k->pdev->dev;
	struct cosim_sva_bind b = { 0 };
	struct iommu_sva *h;
	int ret;

	if (sf->handle)
		return -EBUSY;
#if SVA_FEATURE_API
	ret = iommu_dev_enable_feature(dev, IOMMU_DEV_FEAT_SVA);
	if (ret) {
		/* The driver says SVA is not for this device or platform (6.1 refuses it when the
		 * SMMU's OAS is below the CPU's PARange, which arm64.nolva does not lower there):
		 * the test reports the area unsupported, naming this line. */
		dev_warn(dev, "sva: iommu_dev_enable_feature(SVA) returned %d\n", ret);
		return ret == -EINVAL || ret == -ENODEV ? -EOPNOTSUPP : ret;
	}
	sf->feature = true;
#endif
#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 4, 0)
	h = iommu_sva_bind_device(dev, current->mm, NULL);	/* a drvdata argument until 6.4 */
#else
	h = iommu_sva_bind_device(dev, current->mm);
#endif
	if (IS_ERR(h)) {
		ret = PTR_ERR(h);
		dev_warn(dev, "sva: iommu_sva_bind_device() returned %d\n", ret);
		sva_unbind(sf);
		return ret;
	}
	sf->handle = h;
	sf->pasid = iommu_sva_get_pasid(h);
	b.pasid = sf->pasid;
	dev_info(dev, "sva: bound pid %d, PASID %u\n", task_pid_nr(current), sf->pasid);
	return copy_to_user(arg, &b, sizeof(b)) ? -EFAULT : 0;
}

static long sva_switch(struct sva_file *sf, void __user *arg)
{
	struct cosim_sva_switch *a;
	struct page **pages = NULL;
	struct ksw *s = NULL;
	void *view = NULL;
	unsigned int n = 0;
	long pinned = 0, ret = 0;

	if (!sf->handle)
		return -ENXIO;
	a = kzalloc(sizeof(*a), GFP_KERNEL);
	s = kzalloc(sizeof(*s), GFP_KERNEL);
	if (!a || !s) {
		ret = -ENOMEM;
		goto out;
	}
	if (copy_from_user(a, arg, sizeof(*a))) {
		ret = -EFAULT;
		goto out;
	}
	n = a->size >> PAGE_SHIFT;
	if (!PAGE_ALIGNED(a->base) || !PAGE_ALIGNED(a->size) || n < KSW_TG_PAGES_MIN ||
	    n > SVA_PAGES_MAX) {
		ret = -EINVAL;
		goto out;
	}
	pages = kvcalloc(n, sizeof(*pages), GFP_KERNEL);
	if (!pages) {
		ret = -ENOMEM;
		goto out;
	}
	pinned = pin_user_pages_fast(a->base, n, FOLL_WRITE | FOLL_LONGTERM, pages);
	if (pinned != n) {
		ret = pinned < 0 ? pinned : -EFAULT;
		goto out;
	}
	view = vmap(pages, n, VM_MAP, PAGE_KERNEL);
	if (!view) {
		ret = -ENOMEM;
		goto out;
	}
	*s = (struct ksw){ .k = sf->k, .ats = a->flags & COSIM_SVA_SWITCH_ATS,
			   .identity = a->flags & COSIM_SVA_SWITCH_IDENTITY, .sva = true,
			   .pasid = sf->pasid, .tg_view = view, .tg_addr = a->base,
			   .tg_len = a->size, .tg_pages = n, .ats_paging = -1, .ats_default = -1 };
	s->name = s->identity ? (s->ats ? "svaswitch_identity_ats" : "svaswitch_identity_untranslated")
			      : (s->ats ? "svaswitch_dma_ats" : "svaswitch_dma_untranslated");
	mutex_lock(&sf->k->lock);
	kswitch_line(s, a->line, sizeof(a->line));
	mutex_unlock(&sf->k->lock);
	if (copy_to_user(arg, a, sizeof(*a)))
		ret = -EFAULT;
out:
	if (view)
		vunmap(view);
	if (pinned > 0)
		unpin_user_pages(pages, pinned);
	kvfree(pages);
	kfree(s);
	kfree(a);
	return ret;
}

static long sva_ioctl(struct file *f, unsigned int cmd, unsigned long arg)
{
	struct sva_file *sf = f->private_data;
	long ret;

	mutex_lock(&sf->lock);
	switch (cmd) {
	case COSIM_SVA_BIND:
		ret = sva_bind(sf, (void __user *)arg);
		break;
	case COSIM_SVA_UNBIND:
		ret = sf->handle ? 0 : -ENXIO;
		sva_unbind(sf);
		break;
	case COSIM_SVA_SWITCH:
		ret = sva_switch(sf, (void __user *)arg);
		break;
	default:
		ret = -ENOTTY;
	}
	mutex_unlock(&sf->lock);
	return ret;
}

static int sva_release(struct inode *inode, struct file *f)
{
	struct sva_file *sf = f->private_data;

	sva_unbind(sf);
	kfree(sf);
	return 0;
}

static const struct file_operations sva_fops = {
	.owner = THIS_MODULE,
	.open = sva_open,
	.unlocked_ioctl = sva_ioctl,
	.release = sva_release,
};

static int kdma_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	struct kdma *k;
	u32 ident;
	int ret;

	k = devm_kzalloc(&pdev->dev, sizeof(*k), GFP_KERNEL);
	if (!k)
		return -ENOMEM;
	k->pdev = pdev;
	mutex_init(&k->lock);
	/* Bound by driver_override, which matches any device: refuse anything else. */
	if (pdev->vendor != COSIM_EP_VENDOR_ID || pdev->device != COSIM_EP_DEVICE_ID)
		return -ENODEV;
	ret = pcim_enable_device(pdev);
	if (ret)
		return ret;
	ret = dma_set_mask_and_coherent(&pdev->dev, DMA_BIT_MASK(64));
	if (ret)
		return dev_err_probe(&pdev->dev, ret, "no 64-bit DMA mask\n");
	k->regs = pcim_iomap(pdev, COSIM_EP_BAR_REGS, COSIM_EP_BAR_REGS_SIZE);
	if (!k->regs)
		return dev_err_probe(&pdev->dev, -ENOMEM, "cannot map BAR%d\n",
				     COSIM_EP_BAR_REGS);
	ident = readl(k->regs + COSIM_EP_ID);
	if (ident != COSIM_EP_ID_VALUE)
		return dev_err_probe(&pdev->dev, -ENODEV, "BAR0 ID 0x%08x, expected 0x%08x\n",
				     ident, COSIM_EP_ID_VALUE);
	/* Start from a clean engine and ATC, as a driver does after taking a device over. */
	writel(1, k->regs + COSIM_EP_RESET);
	pci_set_master(pdev);
	pci_set_drvdata(pdev, k);

	k->dir = debugfs_create_dir(pci_name(pdev), debug_root);
	debugfs_create_file("copy_coherent_untranslated", 0400, k->dir, k,
			    &copy_coherent_untranslated_fops);
	debugfs_create_file("copy_coherent_ats", 0400, k->dir, k, &copy_coherent_ats_fops);
	debugfs_create_file("copy_streaming_untranslated", 0400, k->dir, k,
			    &copy_streaming_untranslated_fops);
	debugfs_create_file("copy_streaming_ats", 0400, k->dir, k, &copy_streaming_ats_fops);
	debugfs_create_file("dmaswitch_untranslated", 0400, k->dir, k,
			    &dmaswitch_untranslated_fops);
	debugfs_create_file("dmaswitch_ats", 0400, k->dir, k,
			    &dmaswitch_ats_fops);
	debugfs_create_file("identityswitch_untranslated", 0400, k->dir, k,
			    &identityswitch_untranslated_fops);
	debugfs_create_file("identityswitch_ats", 0400, k->dir, k,
			    &identityswitch_ats_fops);
	debugfs_create_file("sva", 0600, k->dir, k, &sva_fops);
	dev_info(&pdev->dev, "bound; iommu domain %s; debugfs " DRV_NAME "/%s\n",
		 domain_type(iommu_get_domain_for_dev(&pdev->dev)), pci_name(pdev));
	return 0;
}

static void kdma_remove(struct pci_dev *pdev)
{
	struct kdma *k = pci_get_drvdata(pdev);

	/* Files first: no case may be running once the device goes (debugfs waits for them). */
	debugfs_remove_recursive(k->dir);
	pci_clear_master(pdev);
}

/* Empty ID table: the device is bound only by driver_override (see the header comment). */
static const struct pci_device_id kdma_ids[] = {
	{ 0 }
};

static struct pci_driver kdma_driver = {
	.name = DRV_NAME,
	.id_table = kdma_ids,
	.probe = kdma_probe,
	.remove = kdma_remove,
};

static int __init kdma_init(void)
{
	int ret;

	debug_root = debugfs_create_dir(DRV_NAME, NULL);
	ret = pci_register_driver(&kdma_driver);
	if (ret)
		debugfs_remove_recursive(debug_root);
	return ret;
}

static void __exit kdma_exit(void)
{
	pci_unregister_driver(&kdma_driver);
	debugfs_remove_recursive(debug_root);
}

module_init(kdma_init);
module_exit(kdma_exit);
MODULE_DESCRIPTION("cosim-pcie-ep DMA through the kernel's default DMA domain (test driver)");
MODULE_LICENSE("Dual MIT/GPL");
