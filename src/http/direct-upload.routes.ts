import { Router } from 'express';
import type { Services } from '../services.js';
import { route } from './respond.js';

/**
 * PUT /direct-uploads/{signedId}: the upload endpoint of direct uploads on local
 * disk (S3 hands out presigned URLs instead). The signed id in the path is the
 * credential, as a presigned URL's signature is.
 */
export function directUploadRoutes(services: Services): Router {
  const router = Router();
  router.put(
    '/direct-uploads/:signedId',
    route(services.logger, async (req, res) => {
      // The client can reset at any moment: the request's errors reach receive()
      // through its own stream handling; this listener only keeps one from ever
      // being an unhandled 'error' event.
      req.on('error', () => undefined);
      const length = req.headers['content-length'] !== undefined ? Number(req.headers['content-length']) : undefined;
      try {
        const md5 = req.headers['content-md5'];
        await services.directUploads.receive(String(req.params['signedId']), req.headers['content-type'], length, req, typeof md5 === 'string' ? md5 : undefined);
      } catch (e) {
        if (!req.complete) {
          // Refused before the body ended (at once, or at the size limit): the
          // connection cannot carry another request, so close it after the answer,
          // and drop what still arrives so that the answer goes out.
          res.setHeader('Connection', 'close');
          req.unpipe();
          req.resume();
        }
        throw e;
      }
      res.status(200).end();
    }),
  );
  return router;
}
