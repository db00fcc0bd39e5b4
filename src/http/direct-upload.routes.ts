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
      const length = req.headers['content-length'] !== undefined ? Number(req.headers['content-length']) : undefined;
      await services.directUploads.receive(String(req.params['signedId']), req.headers['content-type'], length, req);
      res.status(200).end();
    }),
  );
  return router;
}
