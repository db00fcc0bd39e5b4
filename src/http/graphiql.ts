import express, { Router } from 'express';
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);
const dirOf = (pkg: string) => path.dirname(require.resolve(`${pkg}/package.json`));

// GraphiQL 3 ships a UMD build that runs on React 18's UMD builds: everything is
// served from node_modules, so the page works offline (no CDN).
const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Media API · GraphiQL</title>
<link rel="stylesheet" href="/graphiql/assets/graphiql.min.css">
<style>
  body { margin: 0; height: 100vh; display: flex; flex-direction: column; font-family: system-ui, sans-serif; }
  #bar { display: flex; gap: 8px; align-items: center; padding: 6px 10px; background: #f3f4f6; border-bottom: 1px solid #ddd; font-size: 13px; }
  #bar input { flex: 1; font-family: monospace; padding: 4px; }
  #graphiql { flex: 1; }
</style>
</head>
<body>
<div id="bar"><label for="token">Bearer token</label><input id="token" placeholder="npm run token -- --tenant demo" autocomplete="off"><span id="state"></span></div>
<div id="graphiql">Loading…</div>
<script src="/graphiql/assets/react.production.min.js"></script>
<script src="/graphiql/assets/react-dom.production.min.js"></script>
<script src="/graphiql/assets/graphiql.min.js"></script>
<script src="/graphiql/assets/page.js"></script>
</body>
</html>`;

// External script (not inline) so the page can run under a strict CSP.
const SCRIPT = `(() => {
  const input = document.getElementById('token');
  input.value = localStorage.getItem('media-api-token') || '';
  input.addEventListener('input', () => localStorage.setItem('media-api-token', input.value.trim()));
  const fetcher = async (params, opts) => {
    const token = input.value.trim();
    const headers = { 'content-type': 'application/json', ...(opts && opts.headers) };
    if (token) headers.authorization = 'Bearer ' + token;
    const res = await fetch('/graphql', { method: 'POST', headers, body: JSON.stringify(params) });
    return res.json();
  };
  ReactDOM.createRoot(document.getElementById('graphiql')).render(React.createElement(GraphiQL, { fetcher, defaultEditorToolsVisibility: true }));
})();`;

/**
 * GET /graphql from a browser (Accept: text/html) answers the GraphiQL page; other
 * GET requests fall through to Apollo.
 */
export function graphiqlRoutes(): Router {
  const router = Router();
  const assets = express.static.bind(express);
  router.use('/graphiql/assets', assets(dirOf('graphiql'), { index: false, maxAge: '1d' }));
  router.use('/graphiql/assets', assets(path.join(dirOf('react'), 'umd'), { index: false, maxAge: '1d' }));
  router.use('/graphiql/assets', assets(path.join(dirOf('react-dom'), 'umd'), { index: false, maxAge: '1d' }));
  router.get('/graphiql/assets/page.js', (_req, res) => {
    res.type('application/javascript').send(SCRIPT);
  });
  router.get('/graphql', (req, res, next) => {
    if (req.method !== 'GET' || !req.accepts('text/html') || req.query['query'] !== undefined) return next();
    res.type('html').setHeader('Content-Security-Policy', "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'");
    res.send(PAGE);
  });
  return router;
}
