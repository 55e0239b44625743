// `{{name}}`: an ext-runner extension.
//
// - `GET /hello` (or `?name=`): a JSON greeting;
// - `POST /echo`: the JSON body, echoed back;
// - anything else: `404` JSON.
//
// `ext-runner dev .` builds it, serves it and rebuilds on every save; see
// README.md. Capabilities (`kv`, `http`, `secrets`, … from '@ext-runner/sdk')
// need their `cap:…` name in manifest.json's `capabilities`.

import { ExtError, Response, defineHandler } from '@ext-runner/sdk';

export const handler = defineHandler((req) => {
  if (req.method === 'GET' && req.matchPath('/hello') !== undefined) {
    const name = req.query('name') || 'world';
    return Response.json(200, { message: `Hello, ${name}!`, extension: req.context.extensionId });
  }
  if (req.method === 'POST' && req.matchPath('/echo') !== undefined) {
    return Response.json(200, req.json());
  }
  throw ExtError.notFound(`no route for ${req.method} ${req.path}`);
});
