// Ambient declarations of the `alga:extension` imports as componentize-js
// exposes them inside a component, for authors who import the raw world
// instead of (or beside) the SDK's wrappers:
//
//   /// <reference types="@ext-runner/sdk/alga-extension" />
//   import { getContext } from 'alga:extension/context';
//
// An import returning `result<T, E>` returns `T` and throws an `Error`
// whose `payload` is `E` (see `@ext-runner/sdk/wit`). These modules exist
// only inside the component: in Node.js use `@ext-runner/sdk/testing`.

declare module 'alga:extension/context' {
  export function getContext(): import('@ext-runner/sdk/wit').ContextData;
}

declare module 'alga:extension/logging' {
  export function logInfo(message: string): void;
  export function logWarn(message: string): void;
  export function logError(message: string): void;
}

declare module 'alga:extension/secrets' {
  /** @throws Error with `payload: SecretErrorCode` */
  export function get(key: string): string;
  export function listKeys(): string[];
}

declare module 'alga:extension/http' {
  /** @throws Error with `payload: HttpErrorCode` */
  export function fetch(request: import('@ext-runner/sdk/wit').HttpRequest): import('@ext-runner/sdk/wit').HttpResponse;
}

declare module 'alga:extension/storage' {
  type StorageEntry = import('@ext-runner/sdk/wit').StorageEntry;
  /** @throws Error with `payload: StorageErrorCode` */
  export function get(namespace: string, key: string): StorageEntry;
  /** @throws Error with `payload: StorageErrorCode` */
  export function put(entry: StorageEntry): StorageEntry;
  /** @throws Error with `payload: StorageErrorCode` */
  function delete_(namespace: string, key: string): void;
  export { delete_ as delete };
  /** @throws Error with `payload: StorageErrorCode` */
  export function listEntries(namespace: string, cursor: string | undefined): StorageEntry[];
}

declare module 'alga:extension/ui-proxy' {
  /** @throws Error with `payload: ProxyErrorCode` */
  export function callRoute(route: string, payload: Uint8Array | undefined): Uint8Array;
}

declare module 'alga:extension/user' {
  /** @throws Error with `payload: UserErrorCode` */
  export function getUser(): import('@ext-runner/sdk/wit').UserData;
}

declare module 'alga:extension/user-v2' {
  /** @throws Error with `payload: UserErrorCode` */
  export function getUser(): import('@ext-runner/sdk/wit').UserDataV2;
}

declare module 'alga:extension/scheduler' {
  type ScheduleInfo = import('@ext-runner/sdk/wit').ScheduleInfo;
  type EndpointInfo = import('@ext-runner/sdk/wit').EndpointInfo;
  /** @throws Error with `payload: SchedulerErrorCode` */
  export function listSchedules(): ScheduleInfo[];
  /** @throws Error with `payload: SchedulerErrorCode` */
  export function getSchedule(scheduleId: string): ScheduleInfo | undefined;
  export function createSchedule(
    input: import('@ext-runner/sdk/wit').CreateScheduleInput,
  ): import('@ext-runner/sdk/wit').CreateScheduleResult;
  export function updateSchedule(
    scheduleId: string,
    input: import('@ext-runner/sdk/wit').UpdateScheduleInput,
  ): import('@ext-runner/sdk/wit').UpdateScheduleResult;
  export function deleteSchedule(scheduleId: string): import('@ext-runner/sdk/wit').DeleteScheduleResult;
  /** @throws Error with `payload: SchedulerErrorCode` */
  export function getEndpoints(): EndpointInfo[];
}

declare module 'alga:extension/invoicing' {
  export function createManualInvoice(
    input: import('@ext-runner/sdk/wit').CreateManualInvoiceInput,
  ): import('@ext-runner/sdk/wit').CreateManualInvoiceResult;
}

declare module 'alga:extension/clients' {
  type ClientSummary = import('@ext-runner/sdk/wit').ClientSummary;
  /** @throws Error with `payload: ClientReadErrorCode` */
  export function listClients(input: import('@ext-runner/sdk/wit').ClientsListInput): import('@ext-runner/sdk/wit').ClientsListResult;
  /** @throws Error with `payload: ClientReadErrorCode` */
  export function getClient(clientId: string): ClientSummary | undefined;
}

declare module 'alga:extension/services' {
  type ServiceSummary = import('@ext-runner/sdk/wit').ServiceSummary;
  /** @throws Error with `payload: ServiceReadErrorCode` */
  export function listServices(input: import('@ext-runner/sdk/wit').ServicesListInput): import('@ext-runner/sdk/wit').ServicesListResult;
  /** @throws Error with `payload: ServiceReadErrorCode` */
  export function getService(serviceId: string): ServiceSummary | undefined;
}
