/**
 * `cap:invoice.manual.create`: manual invoices in the host product.
 *
 * The interface has no error type: every failure is a result with
 * `success: false` and `error` (the host's message, or `denied` without the
 * capability, `validation-failed` with `fieldErrors`, `not-found`,
 * `quota-exceeded`, `internal`). A `quantity` or `rate` that is not a finite
 * number is refused by the runner before any call (`validation-failed`,
 * `fieldErrors` `{"items[0].rate": …}`).
 *
 * @module
 */

import { host } from './host.js';
import { parseFieldErrors, type FieldErrors } from './product.js';
import type { CreateManualInvoiceResult, DiscountType } from './wit.js';

/** One line of a [[ManualInvoice]] (`manual-invoice-item-input`). */
export interface InvoiceItem {
  /** The service billed. */
  serviceId: string;
  /** How many units. */
  quantity: number;
  /** The line's text. */
  description: string;
  /** Price per unit. */
  rate: number;
  /** Whether the line is a discount. */
  isDiscount?: boolean | undefined;
  /** A discount's kind. */
  discountType?: DiscountType | undefined;
  /** The line a discount applies to. */
  appliesToItemId?: string | undefined;
  /** The service a discount applies to. */
  appliesToServiceId?: string | undefined;
}

/** A manual invoice to create (`create-manual-invoice-input`). */
export interface ManualInvoice {
  /** The client invoiced. */
  clientId: string;
  /** Its lines. */
  items: readonly InvoiceItem[];
  /** `YYYY-MM-DD`; the host's default (today) when absent. */
  invoiceDate?: string | undefined;
  /** `YYYY-MM-DD`; the host's default when absent. */
  dueDate?: string | undefined;
  /** The client's purchase order number. */
  poNumber?: string | undefined;
}

/** What [[createManualInvoice]] answers (`create-manual-invoice-result`), field errors parsed. */
export interface InvoiceResult {
  readonly success: boolean;
  /** The new invoice's id, number and status (e.g. `draft`). */
  readonly invoiceId: string | undefined;
  readonly invoiceNumber: string | undefined;
  readonly status: string | undefined;
  /** Amounts the host computed. */
  readonly subtotal: number | undefined;
  readonly tax: number | undefined;
  readonly total: number | undefined;
  /** Why it failed. */
  readonly error: string | undefined;
  /** Field → what is wrong with it; `undefined` when none (or the host's text is not a JSON object). */
  readonly fieldErrors: FieldErrors | undefined;
  /** The field errors as the host gave them (JSON text). */
  readonly fieldErrorsText: string | undefined;
}

function toResult(raw: CreateManualInvoiceResult): InvoiceResult {
  return Object.freeze({
    success: raw.success,
    invoiceId: raw.invoiceId,
    invoiceNumber: raw.invoiceNumber,
    status: raw.status,
    subtotal: raw.subtotal,
    tax: raw.tax,
    total: raw.total,
    error: raw.error,
    fieldErrors: parseFieldErrors(raw.fieldErrors),
    fieldErrorsText: raw.fieldErrors,
  });
}

/** Creates a manual invoice. Never throws for a refusal: see the module's summary. */
export function createManualInvoice(invoice: ManualInvoice): InvoiceResult {
  const invoicing = host().invoicing;
  if (invoicing === undefined) return toResult({ success: false, error: 'denied' });
  return toResult(
    invoicing.createManualInvoice({
      clientId: invoice.clientId,
      items: invoice.items.map((item) => ({
        serviceId: item.serviceId,
        quantity: item.quantity,
        description: item.description,
        rate: item.rate,
        isDiscount: item.isDiscount,
        discountType: item.discountType,
        appliesToItemId: item.appliesToItemId,
        appliesToServiceId: item.appliesToServiceId,
      })),
      invoiceDate: invoice.invoiceDate,
      dueDate: invoice.dueDate,
      poNumber: invoice.poNumber,
    }),
  );
}
