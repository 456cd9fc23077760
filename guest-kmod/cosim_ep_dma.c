// SPDX-License-Identifier: MIT OR GPL-2.0
/*
 * cosim_ep_dma: a minimal kernel driver for cosim-pcie-ep whose only job is to make the
 * endpoint's DMA engine copy between buffers that the DMA API mapped, so that the DMA goes
 * through the default DMA domain the arm-smmu-v3 driver attached when this driver bound
 * (every other guest test drives the endpoint from userspace through VFIO/iommufd domains).
 *
 * It has no device-ID table on purpose: nothing binds it by itself, so it never takes the
 * endpoint from vfio-pci. The test binds it with driver_override + drivers_probe.
 *
 * Each case is a debugfs file, /sys/kernel/debug/cosim_ep_dma/<bdf>/<case>; reading it runs
 * the case and returns one line:
 *   ok <case> domain=<type> len=<n> iova_src=0x.. pa_src=0x.. iova_dst=0x.. pa_dst=0x.. ...
 *   fail <case> <what went wrong, with the numbers> ...
 * pa_* is the CPU's physical address of the buffer's first byte, and *_walk the physical
 * address the domain's page table gives for the IOVA (they must agree); the IOVA differing
 * from both is what shows the SMMU translated.
 */
#include <linux/debugfs.h>
#include <linux/dma-mapping.h>
#include <linux/io.h>
#include <linux/iommu.h>
#include <linux/iopoll.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/pci.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/vmalloc.h>

/* Register map: generated from cosim/endpoint/regs.py (docs/endpoint.md). Kbuild adds
 * guest-tests/include to the include path. */
#include "cosim_ep.h"

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
	u64 ats_req, atc_hit, atc_miss, faults;
};

static void cnt_read(struct kdma *k, struct ep_cnt *c)
{
	c->ats_req = readq(k->regs + COSIM_EP_CNT_ATS_REQ);
	c->atc_hit = readq(k->regs + COSIM_EP_CNT_ATC_HIT);
	c->atc_miss = readq(k->regs + COSIM_EP_CNT_ATC_MISS);
	c->faults = readq(k->regs + COSIM_EP_CNT_FAULTS);
}

/*
 * Record a (tag, 0, label) marker in the model's trace. Each case is bracketed by test-begin
 * and test-end, so the trace analyser bounds the previous test's attach windows there and
 * the kdma DMA shows up under the case's name.
 */
static void marker(struct kdma *k, u32 tag, const char *label)
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
	writeq(0, k->regs + COSIM_EP_MARKER_VALUE);
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
