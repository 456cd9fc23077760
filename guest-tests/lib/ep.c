// SPDX-License-Identifier: MIT
/*
 * The endpoint as a userspace driver sees it: found in sysfs, bound to vfio-pci, opened as a
 * VFIO cdev bound to an iommufd with BAR0 mapped (or BAR0 through sysfs, no driver); its
 * registers and markers; and the attaches the end of the case undoes visibly.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ep.h"
#include "iommufd.h"

/*
 * What the teardown hook needs once the case's own struct ep (on its stack) is gone: a copy
 * of the opened device's handles, and its attach state, kept in step by the attach and
 * detach calls below.
 */
struct ep_teardown {
	struct ep dev;
	bool rid_attached;
	uint32_t pasid_attached; /* 0 when none */
};

static void init(struct ep *ep)
{
	memset(ep, 0, sizeof(*ep));
	vfio_init(&ep->vfio);
	ep->iommufd = -1;
}

static int check_id(struct ep *ep)
{
	uint32_t id = ep_rd32(ep, COSIM_EP_ID), ver = ep_rd32(ep, COSIM_EP_VERSION);

	if (id != COSIM_EP_ID_VALUE)
		return ep_set_err(EP_ERR, "BAR0 ID reads 0x%08x, expected 0x%08x", id,
				  COSIM_EP_ID_VALUE);
	if (ver != COSIM_EP_VERSION_VALUE)
		return ep_set_err(EP_ERR, "BAR0 VERSION reads %u, these tests know %u", ver,
				  COSIM_EP_VERSION_VALUE);
	return EP_OK;
}

int ep_find(struct ep *ep, const char *bdf)
{
	init(ep);
	return pci_find(&ep->pci, bdf, COSIM_EP_VENDOR_ID, COSIM_EP_DEVICE_ID);
}

int ep_bind_vfio(struct ep *ep, const char *bdf)
{
	int rc = ep_find(ep, bdf);

	if (rc)
		return rc;
	rc = pci_bind_driver(&ep->pci, "vfio-pci");
	if (rc)
		return rc;
	pci_read_group(&ep->pci);
	return EP_OK;
}

/* The end of a case: stop the generator, clear Bus Master, detach PASID and RID under
 * markers. */
static void teardown(void *arg)
{
	struct ep_teardown *t = arg;
	struct ep *ep = &t->dev;
	int rc;

	ep_wr32(ep, COSIM_EP_TG_CTRL, 0); /* the traffic generator off */
	pci_bus_master(&ep->pci, false);
	if (t->pasid_attached) {
		uint32_t pasid = t->pasid_attached;

		ep_marker(ep, COSIM_EP_MARKER_TAG_PASID_ATTACH_BEGIN, pasid, "cleanup: detach");
		rc = vfio_detach_pasid(&ep->vfio, pasid);
		ep_marker(ep, COSIM_EP_MARKER_TAG_PASID_ATTACH_END, pasid, "cleanup: detach");
		if (rc)
			vdiag("cleanup: PASID %u detach: %s", pasid, ep_err);
		else
			t->pasid_attached = 0;
	}
	/* Without the detach uapi (EP_UNSUP) close() does the same, unmarked. */
	if (t->rid_attached) {
		ep_marker(ep, COSIM_EP_MARKER_TAG_ATTACH_BEGIN, 0, "cleanup: detach");
		rc = vfio_detach_pt(&ep->vfio);
		ep_marker(ep, COSIM_EP_MARKER_TAG_ATTACH_END, 0, "cleanup: detach");
		if (rc)
			vdiag("cleanup: RID detach: %s", ep_err);
		else
			t->rid_attached = false;
	}
}

static int open_vfio(struct ep *ep, const char *bdf)
{
	int rc;

	rc = ep_bind_vfio(ep, bdf);
	if (!rc)
		rc = vfio_open_cdev(&ep->vfio, &ep->pci);
	if (!rc)
		rc = iommufd_open(&ep->iommufd);
	if (!rc)
		rc = vfio_bind_iommufd(&ep->vfio, ep->iommufd);
	if (!rc)
		rc = vfio_config_region(&ep->vfio);
	if (rc)
		return rc;
	pci_cfg_owner(&ep->pci, ep->vfio.fd, (off_t)ep->vfio.cfg_off);
	rc = vfio_map_bar(&ep->vfio, 0, COSIM_EP_BAR_REGS_SIZE, &ep->bar, &ep->bar_size);
	if (!rc)
		rc = check_id(ep);
	return rc;
}

int ep_open_vfio(struct ep *ep, const char *bdf)
{
	struct ep_teardown *t;
	int rc = open_vfio(ep, bdf);

	if (rc)
		return rc;
	ep_reset(ep);
	t = calloc(1, sizeof(*t));
	if (!t)
		return ep_set_err(EP_ERR, "out of memory for the teardown state");
	t->dev = *ep;
	if (tap_on_teardown(teardown, t)) {
		free(t);
		return ep_set_err(EP_ERR, "no room for the endpoint's teardown hook");
	}
	ep->td = t;
	t->dev.td = t;
	return EP_OK;
}

int ep_open_sysfs(struct ep *ep, const char *bdf)
{
	int rc;

	rc = ep_find(ep, bdf);
	if (!rc)
		rc = pci_unbind_driver(&ep->pci);
	if (!rc)
		rc = pci_map_resource(&ep->pci, 0, &ep->bar, &ep->bar_size);
	/* No driver enabled the device: turn on memory decoding ourselves. */
	if (!rc)
		rc = pci_memory_enable(&ep->pci);
	if (!rc)
		rc = check_id(ep);
	if (rc)
		return rc;
	ep_reset(ep);
	return EP_OK;
}

int ep_map_bar(struct ep *ep)
{
	int rc = pci_map_resource(&ep->pci, 0, &ep->bar, &ep->bar_size);

	return rc ? rc : check_id(ep);
}

void ep_close(struct ep *ep)
{
	if (ep->td) {
		tap_cancel_teardown(teardown, ep->td);
		free(ep->td);
	}
	if (ep->bar)
		munmap((void *)ep->bar, ep->bar_size);
	vfio_close(&ep->vfio);
	if (ep->iommufd >= 0)
		close(ep->iommufd);
	pci_close(&ep->pci);
	init(ep);
}

/* ------------------------------------------------------------------------------------- */
/* Attach, tracked for the teardown */

int ep_attach(struct ep *ep, uint32_t pt_id)
{
	int rc = vfio_attach_pt(&ep->vfio, pt_id);

	if (!rc && ep->td)
		ep->td->rid_attached = true;
	return rc;
}

int ep_detach(struct ep *ep)
{
	int rc = vfio_detach_pt(&ep->vfio);

	if (!rc && ep->td)
		ep->td->rid_attached = false;
	return rc;
}

int ep_attach_marked(struct ep *ep, uint32_t pt_id, uint64_t i, const char *label)
{
	int rc;

	ep_marker(ep, COSIM_EP_MARKER_TAG_ATTACH_BEGIN, i, label);
	rc = ep_attach(ep, pt_id);
	ep_marker(ep, COSIM_EP_MARKER_TAG_ATTACH_END, i, label);
	return rc;
}

int ep_detach_marked(struct ep *ep, uint64_t i, const char *label)
{
	int rc;

	ep_marker(ep, COSIM_EP_MARKER_TAG_ATTACH_BEGIN, i, label);
	rc = ep_detach(ep);
	ep_marker(ep, COSIM_EP_MARKER_TAG_ATTACH_END, i, label);
	return rc;
}

int ep_attach_pasid(struct ep *ep, uint32_t pasid, uint32_t pt_id)
{
	int rc = vfio_attach_pasid(&ep->vfio, pasid, pt_id);

	if (!rc && ep->td)
		ep->td->pasid_attached = pasid;
	return rc;
}

int ep_detach_pasid(struct ep *ep, uint32_t pasid)
{
	int rc = vfio_detach_pasid(&ep->vfio, pasid);

	if (!rc && ep->td && ep->td->pasid_attached == pasid)
		ep->td->pasid_attached = 0;
	return rc;
}

int ep_domain(struct ep *ep, struct domain *d, uint64_t iova, uint64_t len, uint32_t hwpt_flags)
{
	int rc;

	memset(d, 0, sizeof(*d));
	d->iova = iova;
	d->len = len;
	d->buf = dma_buf(len);
	if (!d->buf)
		return EP_ERR;
	rc = iommufd_ioas_alloc(ep->iommufd, &d->ioas);
	if (!rc)
		rc = iommufd_ioas_map(ep->iommufd, d->ioas, d->buf, len, iova);
	if (!rc)
		rc = iommufd_hwpt_alloc(ep->iommufd, ep->vfio.dev_id, d->ioas, hwpt_flags,
					&d->hwpt);
	return rc;
}

/* ------------------------------------------------------------------------------------- */
/* Registers */

/* BAR0 is a device mapping: single-copy accesses of exactly the register's width. */
uint32_t ep_rd32(struct ep *ep, uint32_t off)
{
	return *(volatile uint32_t *)(ep->bar + off);
}

uint64_t ep_rd64(struct ep *ep, uint32_t off)
{
	return *(volatile uint64_t *)(ep->bar + off);
}

void ep_wr32(struct ep *ep, uint32_t off, uint32_t val)
{
	*(volatile uint32_t *)(ep->bar + off) = val;
}

void ep_wr64(struct ep *ep, uint32_t off, uint64_t val)
{
	*(volatile uint64_t *)(ep->bar + off) = val;
}

void ep_reset(struct ep *ep)
{
	ep_wr32(ep, COSIM_EP_RESET, 1);
}

void ep_marker(struct ep *ep, uint32_t tag, uint64_t value, const char *label)
{
	char text[COSIM_EP_MARKER_LABEL_BYTES] = { 0 };

	/* 32 bytes, NUL padded; a 32-character label fills it without a terminator. */
	if (label)
		memcpy(text, label, strnlen(label, sizeof(text)));
	for (unsigned i = 0; i < COSIM_EP_MARKER_LABEL_BYTES / 4; i++) {
		uint32_t w;

		memcpy(&w, text + 4 * i, sizeof(w));
		ep_wr32(ep, COSIM_EP_MARKER_LABEL + 4 * i, w);
	}
	ep_wr32(ep, COSIM_EP_MARKER_TAG, tag);
	ep_wr64(ep, COSIM_EP_MARKER_VALUE, value); /* this write records the marker */
}
