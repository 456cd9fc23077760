// SPDX-License-Identifier: MIT OR GPL-2.0
/*
 * cosim_drv_probe: tells the model exactly when the arm-smmu-v3 driver starts and finishes
 * changing a device's domain, so the analysis can judge invariant 1 against the moment
 * arm_smmu_attach_dev() returns instead of a userspace marker written later.
 *
 * A kretprobe on each of the driver's domain-changing entry points (RID attach for paging,
 * identity and blocked domains; PASID set_dev_pasid for paging and SVA domains; PASID
 * removal) writes one 64-bit word to the model's IMPLEMENTATION DEFINED register page
 * (SMMU page 0, 0x0E00-0x0EFF, IHI 0070 §6.2) at entry and at return: which operation, the
 * device's StreamID as the driver's fwspec names it, the SubstreamID, and the return value.
 * One MMIO write is one trace record; it costs a round trip to the model and nothing else.
 *
 * The same is done for the driver's invalidation of a domain's range in the TLB and the
 * ATCs (6.12 arm_smmu_atc_inv_domain, 7.2 arm_smmu_domain_inv_range): the IOVA and size go
 * to the two argument registers first, then the word names the domain by its ASID or VMID,
 * so the analysis can check that no ATC still holds the range once the call returned
 * (invariant 2).
 *
 * Linux 6.1 has one RID entry point for every domain type (arm_smmu_attach_dev, which detaches
 * the old domain first; identity is a bypass-stage arm_smmu_domain, and there are no
 * blocked-domain or set_dev_pasid ops): the target of its attach is read from the domain's
 * type at entry. Its domain invalidation takes an SSID before the range, and its domain keeps
 * the CD in s1_cfg. The layout choices below are for 6.1.y (the only pre-6.12 kernel built
 * here); kernels between 6.2 and 6.11 are not checked.
 *
 * Entry points a kernel lacks (renamed, or not there yet) are skipped; the module's load
 * line lists what it armed, and the model's trace records the same list (one record per
 * armed probe, OP_ARMED) so a trace says whether its driver windows are complete.
 */
#include <linux/iommu.h>
#include <linux/io.h>
#include <linux/kprobes.h>
#include <linux/module.h>
#include <linux/of.h>
#include <linux/of_address.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <linux/version.h>

/* The driver's own header (Kbuild adds its directory): struct arm_smmu_domain's stage and tags. */
#include "arm-smmu-v3.h"

/* Register layout: generated from cosim/arch/driver_events.py. */
#include "cosim_drv_event.h"

#define DRV_NAME "cosim_drv_probe"

static ulong smmu_base;
module_param(smmu_base, ulong, 0444);
MODULE_PARM_DESC(smmu_base, "SMMU MMIO base (default: the first arm,smmu-v3 DT node)");

struct probe_spec {
	const char *sym;
	u8 op;		/* COSIM_DRV_OP_* */
	u8 target;	/* COSIM_DRV_TARGET_* */
	s8 dev_arg;	/* argument index of the struct device * */
	s8 ssid_arg;	/* argument index of the PASID, or -1 */
	bool has_ret;	/* returns an int (6.12's PASID removal is void) */
};

/* A domain invalidation entry point: (struct arm_smmu_domain *, iova, size, ...). */
#define DOMAIN_INV(sym) { sym, COSIM_DRV_OP_DOMAIN_INV, COSIM_DRV_TARGET_PAGING, 0, -1, false }

/* Every entry point through which the driver changes what a stream translates with. */
static const struct probe_spec specs[] = {
	{ "arm_smmu_attach_dev", COSIM_DRV_OP_ATTACH, COSIM_DRV_TARGET_PAGING, 1, -1, true },
	{ "arm_smmu_attach_dev_identity", COSIM_DRV_OP_ATTACH, COSIM_DRV_TARGET_IDENTITY, 1, -1, true },
	{ "arm_smmu_attach_dev_blocked", COSIM_DRV_OP_ATTACH, COSIM_DRV_TARGET_BLOCKED, 1, -1, true },
	{ "arm_smmu_attach_dev_nested", COSIM_DRV_OP_ATTACH, COSIM_DRV_TARGET_NESTED, 1, -1, true },
	{ "arm_smmu_s1_set_dev_pasid", COSIM_DRV_OP_PASID_ATTACH, COSIM_DRV_TARGET_PAGING, 1, 2, true },
	{ "arm_smmu_sva_set_dev_pasid", COSIM_DRV_OP_PASID_ATTACH, COSIM_DRV_TARGET_SVA, 1, 2, true },
	{ "arm_smmu_blocking_set_dev_pasid", COSIM_DRV_OP_PASID_REMOVE, COSIM_DRV_TARGET_BLOCKED, 1, 2, true },
	{ "arm_smmu_remove_dev_pasid", COSIM_DRV_OP_PASID_REMOVE, COSIM_DRV_TARGET_BLOCKED, 0, 1, false },
	DOMAIN_INV("arm_smmu_atc_inv_domain"),
	DOMAIN_INV("arm_smmu_domain_inv_range"),
};

struct armed {
	struct kretprobe krp;
	const struct probe_spec *spec;
	bool on;
};

/* What the entry handler saw, for the return handler of the same call. */
struct call {
	u64 word;
};

static struct armed armed[ARRAY_SIZE(specs)];
static void __iomem *impdef;

static u64 event_word(const struct probe_spec *ps, u8 target, u32 sid, bool ssv, u32 ssid)
{
	return COSIM_DRV_FIELD(COSIM_DRV_EVENT_OP, ps->op) |
	       COSIM_DRV_FIELD(COSIM_DRV_EVENT_TARGET, target) |
	       COSIM_DRV_FIELD(COSIM_DRV_EVENT_SSV, ssv) |
	       COSIM_DRV_FIELD(COSIM_DRV_EVENT_SSID, ssid) |
	       COSIM_DRV_FIELD(COSIM_DRV_EVENT_SID, sid);
}

#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 2, 0)
/* 6.1: arm_smmu_atc_inv_domain(domain, ssid, iova, size); the CD lives in s1_cfg. */
#define INV_IOVA_ARG 2
#define DOMAIN_ASID(d) ((d)->s1_cfg.cd.asid)
#else
/* 6.12 arm_smmu_atc_inv_domain(domain, iova, size), 7.2 arm_smmu_domain_inv_range(domain,
 * iova, size, ...); the CD is the domain's own. */
#define INV_IOVA_ARG 1
#define DOMAIN_ASID(d) ((d)->cd.asid)
#endif

/*
 * The kind of domain an attach entry point installs: its own for the typed ones; for the
 * paging entry point, which on 6.1 also takes identity (and any other type), the domain's type.
 */
static u8 attach_target(const struct probe_spec *ps, struct pt_regs *regs)
{
	struct iommu_domain *dom = (struct iommu_domain *)regs->regs[0];
	unsigned int type;

	if (ps->op != COSIM_DRV_OP_ATTACH || ps->target != COSIM_DRV_TARGET_PAGING ||
	    !dom || get_kernel_nofault(type, &dom->type))
		return ps->target;
	if (type == IOMMU_DOMAIN_IDENTITY)
		return COSIM_DRV_TARGET_IDENTITY;
	if (type == IOMMU_DOMAIN_BLOCKED)
		return COSIM_DRV_TARGET_BLOCKED;
	return ps->target;
}

static int domain_inv_entry(const struct probe_spec *ps, struct call *c, struct pt_regs *regs)
{
	struct arm_smmu_domain *d = (struct arm_smmu_domain *)regs->regs[0];
	enum arm_smmu_domain_stage stage;
	u16 vmid, asid;
	bool s2;

	/*
	 * A probe must never be what crashes the kernel: the domain is read without faulting,
	 * and a pointer that cannot be read is reported by the driver's own access, not ours.
	 */
	if (get_kernel_nofault(stage, &d->stage) || get_kernel_nofault(vmid, &d->s2_cfg.vmid) ||
	    get_kernel_nofault(asid, &DOMAIN_ASID(d))) {
		pr_warn_ratelimited(DRV_NAME ": %s(%px): domain not readable\n", ps->sym, d);
		return 1;	/* no return handler for this call */
	}
#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 2, 0)
	{
		char caller[64];

		/* 6.1's SVA invalidates an mm's range under its PASID through the same call: that
		 * is not a range of the RID's domain, which is what the analysis judges
		 * (invariant 2). */
		if (regs->regs[1])
			return 1;
		/* Nor is arm_smmu_enable_ats()'s call (inlined into arm_smmu_attach_dev()): it
		 * empties the ATC before ATS is enabled and invalidates no TLB entry, while the
		 * unmap and flush paths (arm_smmu_tlb_inv_range_domain(), _context()) invalidate
		 * the TLB first and then call this for the ATCs, the pair the analysis judges. */
		snprintf(caller, sizeof(caller), "%ps", (void *)regs->regs[30]);
		if (!strcmp(caller, "arm_smmu_attach_dev") || !strcmp(caller, "arm_smmu_enable_ats"))
			return 1;
	}
#endif
	s2 = stage == ARM_SMMU_DOMAIN_S2;
	c->word = COSIM_DRV_FIELD(COSIM_DRV_EVENT_OP, ps->op) |
		  COSIM_DRV_FIELD(COSIM_DRV_EVENT_TARGET,
				  s2 ? COSIM_DRV_TARGET_STAGE2 : COSIM_DRV_TARGET_PAGING) |
		  COSIM_DRV_FIELD(COSIM_DRV_EVENT_SSID, s2 ? vmid : asid);
	writeq(regs->regs[INV_IOVA_ARG], impdef + (COSIM_DRV_ARG0_OFFSET - COSIM_DRV_EVENT_OFFSET));
	writeq(regs->regs[INV_IOVA_ARG + 1],
	       impdef + (COSIM_DRV_ARG1_OFFSET - COSIM_DRV_EVENT_OFFSET));
	writeq(c->word | COSIM_DRV_FIELD(COSIM_DRV_EVENT_PHASE, COSIM_DRV_PHASE_BEGIN), impdef);
	return 0;
}

/*
 * The stream ID of the device an entry point was handed, read without faulting: a probe must
 * never be what crashes the kernel. 0: read; 1: not a device behind an SMMU (no fwspec, or
 * no IDs); -EFAULT: the argument, or what it points to, cannot be read.
 */
static int device_sid(struct device *dev, u32 *sid)
{
	struct dev_iommu *di;
	struct iommu_fwspec *fw;
	unsigned int n;

	/* arm64: a kernel address has bit 63 set; without PAN a user one would read. */
	if ((long)dev >= 0 || get_kernel_nofault(di, &dev->iommu))
		return -EFAULT;
	if (!di)
		return 1;
	if (get_kernel_nofault(fw, &di->fwspec))
		return -EFAULT;
	if (!fw)
		return 1;
	if (get_kernel_nofault(n, &fw->num_ids))
		return -EFAULT;
	if (!n)
		return 1;
	return get_kernel_nofault(*sid, &fw->ids[0]) ? -EFAULT : 0;
}

static int drv_entry(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct armed *a = container_of(get_kretprobe(ri), struct armed, krp);
	const struct probe_spec *ps = a->spec;
	struct device *dev = (struct device *)regs->regs[ps->dev_arg];
	struct call *c = (struct call *)ri->data;
	u32 ssid = ps->ssid_arg >= 0 ? (u32)regs->regs[ps->ssid_arg] : 0;
	u32 sid;
	int r;

	if (ps->op == COSIM_DRV_OP_DOMAIN_INV)
		return domain_inv_entry(ps, c, regs);
	/*
	 * Only now: a domain invalidation's argument 0 is a struct arm_smmu_domain (7.2: 232
	 * bytes), and the module of bca917e read "its" dev->iommu (offset 456) and then
	 * ->fwspec before this test, so from past the end of the domain's allocation: 7.2
	 * oopsed once on a stray 0x40003c there. A device that still cannot be read is reported
	 * on the console with what called it (the launcher makes that line a run error: a
	 * driver call the analysis would not see) and not traced.
	 */
	r = device_sid(dev, &sid);
	if (r < 0) {
		pr_warn(DRV_NAME ": %s: device argument %px not readable (called from %pS; "
			"x0-x3 %lx %lx %lx %lx)\n", ps->sym, dev, (void *)regs->regs[30],
			(unsigned long)regs->regs[0], (unsigned long)regs->regs[1],
			(unsigned long)regs->regs[2], (unsigned long)regs->regs[3]);
		return 1;	/* no return handler for this call */
	}
	if (r)
		return 1;	/* not a device behind an SMMU: no return handler */
	c->word = event_word(ps, attach_target(ps, regs), sid, ps->ssid_arg >= 0, ssid);
	writeq(c->word | COSIM_DRV_FIELD(COSIM_DRV_EVENT_PHASE, COSIM_DRV_PHASE_BEGIN),
	       impdef);
	return 0;
}

static int drv_return(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct call *c = (struct call *)ri->data;
	struct armed *a = container_of(get_kretprobe(ri), struct armed, krp);
	s64 ret = a->spec->has_ret ? (s64)regs_return_value(regs) : 0;

	writeq(c->word | COSIM_DRV_FIELD(COSIM_DRV_EVENT_PHASE, COSIM_DRV_PHASE_END) |
	       COSIM_DRV_FIELD(COSIM_DRV_EVENT_RET, (u16)clamp_t(s64, ret, -32768, 0)),
	       impdef);
	return 0;
}

static void __iomem *map_impdef(void)
{
	struct device_node *np;
	struct resource res;
	phys_addr_t base = smmu_base;

	if (!base) {
		np = of_find_compatible_node(NULL, NULL, "arm,smmu-v3");
		if (!np)
			return NULL;
		if (of_address_to_resource(np, 0, &res)) {
			of_node_put(np);
			return NULL;
		}
		of_node_put(np);
		base = res.start;
	}
	/* Not requested: the SMMU driver owns the region; this page is the model's own. */
	return ioremap(base + COSIM_DRV_EVENT_OFFSET, COSIM_DRV_ARG1_OFFSET + 8 - COSIM_DRV_EVENT_OFFSET);
}

static int __init drv_probe_init(void)
{
	int i, n = 0;

	impdef = map_impdef();
	if (!impdef) {
		pr_err(DRV_NAME ": no SMMU found (no arm,smmu-v3 node; pass smmu_base=)\n");
		return -ENODEV;
	}
	for (i = 0; i < ARRAY_SIZE(specs); i++) {
		struct armed *a = &armed[i];

		a->spec = &specs[i];
		a->krp.kp.symbol_name = specs[i].sym;
		a->krp.entry_handler = drv_entry;
		a->krp.handler = drv_return;
		a->krp.data_size = sizeof(struct call);
		a->krp.maxactive = 16;
		if (register_kretprobe(&a->krp) == 0) {
			a->on = true;
			n++;
			writeq(COSIM_DRV_FIELD(COSIM_DRV_EVENT_OP, COSIM_DRV_OP_ARMED) |
			       COSIM_DRV_FIELD(COSIM_DRV_EVENT_TARGET, specs[i].target) |
			       COSIM_DRV_FIELD(COSIM_DRV_EVENT_ARMED_OP, specs[i].op),
			       impdef);
			pr_info(DRV_NAME ": armed %s\n", specs[i].sym);
		}
	}
	if (!n) {
		iounmap(impdef);
		pr_err(DRV_NAME ": none of the driver's attach entry points could be probed\n");
		return -ENOENT;
	}
	pr_info(DRV_NAME ": %d of %zu entry points armed\n", n, ARRAY_SIZE(specs));
	return 0;
}

static void __exit drv_probe_exit(void)
{
	int i;

	for (i = 0; i < ARRAY_SIZE(specs); i++)
		if (armed[i].on)
			unregister_kretprobe(&armed[i].krp);
	iounmap(impdef);
}

module_init(drv_probe_init);
module_exit(drv_probe_exit);
MODULE_DESCRIPTION("cosim: arm-smmu-v3 attach windows as seen by the driver");
MODULE_LICENSE("Dual MIT/GPL");
