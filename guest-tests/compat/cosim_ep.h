/* SPDX-License-Identifier: MIT */
/*
 * TEMPORARY stand-in for include/cosim_ep.h (generated from cosim/endpoint/regs.py), written
 * by hand from docs/endpoint.md with the generator's names. The Makefile searches include/
 * first, so the generated header wins as soon as it exists; delete this file then.
 */
#ifndef COSIM_EP_H
#define COSIM_EP_H

#define COSIM_EP_VENDOR_ID 0x1b36
#define COSIM_EP_DEVICE_ID 0x0120

#define COSIM_EP_ID                 0x000
#define COSIM_EP_VERSION            0x004
#define COSIM_EP_CAPS               0x008
#define COSIM_EP_ATC_SIZE           0x00c
#define COSIM_EP_RESET              0x010
#define COSIM_EP_MARKER_TAG         0x040
#define COSIM_EP_MARKER_VALUE       0x048
#define COSIM_EP_MARKER_LABEL       0x060
#define COSIM_EP_DMA_OP             0x100
#define COSIM_EP_DMA_FLAGS          0x104
#define COSIM_EP_DMA_SRC            0x108
#define COSIM_EP_DMA_DST            0x110
#define COSIM_EP_DMA_LEN            0x118
#define COSIM_EP_DMA_PATTERN        0x120
#define COSIM_EP_DMA_PASID          0x128
#define COSIM_EP_DMA_DOORBELL       0x12c
#define COSIM_EP_DMA_STATUS         0x130
#define COSIM_EP_DMA_RESULT         0x138
#define COSIM_EP_TG_CTRL            0x200
#define COSIM_EP_TG_BASE            0x208
#define COSIM_EP_TG_SIZE            0x210
#define COSIM_EP_TG_STRIDE          0x218
#define COSIM_EP_TG_RATE            0x21c
#define COSIM_EP_TG_PASID           0x220
#define COSIM_EP_TG_TAG             0x228
#define COSIM_EP_TG_SEQ             0x230
#define COSIM_EP_TG_WRITES          0x238
#define COSIM_EP_TG_XLATE_FAIL      0x240
#define COSIM_EP_TG_ABORTS          0x248
#define COSIM_EP_TG_ATS_ERR         0x250
#define COSIM_EP_TG_MISMATCH        0x258
#define COSIM_EP_CNT_ATS_REQ        0x300
#define COSIM_EP_CNT_ATC_HIT        0x308
#define COSIM_EP_CNT_ATC_MISS       0x310
#define COSIM_EP_CNT_INV_REQ        0x318
#define COSIM_EP_CNT_INV_CPL        0x320
#define COSIM_EP_CNT_BM_DROP        0x328
#define COSIM_EP_CNT_ATS_DROP       0x330
#define COSIM_EP_CNT_FAULTS         0x338

#define COSIM_EP_BAR_REGS_SIZE      0x10000
#define COSIM_EP_ID_VALUE           0x50455343
#define COSIM_EP_VERSION_VALUE      0x1
#define COSIM_EP_MARKER_LABEL_BYTES 0x20
#define COSIM_EP_DMA_STATUS_ERR_SHIFT 0x8
#define COSIM_EP_DMA_STATUS_ERR_MASK 0xff
#define COSIM_EP_TG_RECORD_MAGIC    0x3143455254475343ULL
#define COSIM_EP_TG_RECORD_SIZE     0x20
#define COSIM_EP_PASID_MASK         0xfffff

#define COSIM_EP_CAPS_DMA           0x1
#define COSIM_EP_CAPS_TG            0x2
#define COSIM_EP_CAPS_ATS           0x4
#define COSIM_EP_CAPS_PASID         0x8

#define COSIM_EP_MARKER_TAG_ATTACH_BEGIN 0x1
#define COSIM_EP_MARKER_TAG_ATTACH_END 0x2
#define COSIM_EP_MARKER_TAG_UNMAP_BEGIN 0x3
#define COSIM_EP_MARKER_TAG_UNMAP_END 0x4
#define COSIM_EP_MARKER_TAG_TEST_BEGIN 0x5
#define COSIM_EP_MARKER_TAG_TEST_END 0x6
#define COSIM_EP_MARKER_TAG_LABEL   0x7
#define COSIM_EP_MARKER_TAG_PASID_ATTACH_BEGIN 0x8
#define COSIM_EP_MARKER_TAG_PASID_ATTACH_END 0x9

#define COSIM_EP_DMA_OP_COPY        0x1
#define COSIM_EP_DMA_OP_FILL        0x2
#define COSIM_EP_DMA_OP_COMPARE     0x3
#define COSIM_EP_DMA_FLAG_ATS       0x1
#define COSIM_EP_DMA_FLAG_PASID     0x2
#define COSIM_EP_DMA_FLAG_IRQ       0x4
#define COSIM_EP_DMA_STATUS_DONE    0x1
#define COSIM_EP_DMA_STATUS_ERROR   0x2
#define COSIM_EP_DMA_STATUS_MISCOMPARE 0x4
#define COSIM_EP_DMA_ERR_NONE       0x0
#define COSIM_EP_DMA_ERR_XLATE      0x1
#define COSIM_EP_DMA_ERR_ATS        0x2
#define COSIM_EP_DMA_ERR_BME        0x3
#define COSIM_EP_DMA_ERR_ATS_OFF    0x4
#define COSIM_EP_DMA_ERR_BAD_DESC   0x5

#define COSIM_EP_TG_CTRL_RUN        0x1
#define COSIM_EP_TG_CTRL_ATS        0x2
#define COSIM_EP_TG_CTRL_PASID      0x4
#define COSIM_EP_TG_CTRL_READBACK   0x8

#endif /* COSIM_EP_H */
