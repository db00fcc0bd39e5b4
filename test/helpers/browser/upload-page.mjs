// The script of the page cors-browser.test.ts serves on another origin: a front
// end that uploads through Apollo Client + apollo-upload-client, then shows the
// image through its signed url. Bundled for the browser by esbuild at test time.
import { ApolloClient, InMemoryCache, gql } from '@apollo/client';
import UploadHttpLink from 'apollo-upload-client/UploadHttpLink.mjs';

const UPLOAD = gql`
  mutation BrowserUpload($input: UploadInput!) {
    upload(input: $input) {
      id
      url
      contentPath
      width
      height
    }
  }
`;

function loaded(img) {
  return new Promise((resolve, reject) => {
    img.onload = () => resolve();
    img.onerror = () => reject(new Error(`the image did not load: ${img.src}`));
  });
}

/**
 * Uploads the file chosen in #file with a bearer token, shows it in an <img>
 * through its signed url, and reads its content route with the token; returns
 * what happened as plain data (errors included). With `corsImage` the image is
 * loaded in CORS mode and read back through a canvas, which works only if its
 * answer allowed this origin (the url is the service's own route on local disk;
 * on S3 it is a presigned URL of the store, whose CORS is the bucket's).
 */
window.uploadAndShow = async ({ api, token, entity, corsImage }) => {
  const client = new ApolloClient({
    cache: new InMemoryCache(),
    // Apollo Server's CSRF prevention needs Apollo-Require-Preflight on multipart requests; it makes the browser send a preflight.
    link: new UploadHttpLink({ uri: `${api}/graphql`, headers: { 'Apollo-Require-Preflight': 'true', Authorization: `Bearer ${token}` } }),
  });
  const file = document.getElementById('file').files[0];
  let media;
  try {
    media = (await client.mutate({ mutation: UPLOAD, variables: { input: { file, entity } } })).data.upload;
  } catch (e) {
    return { ok: false, stage: 'upload', error: `${e.name}: ${e.message}` };
  }
  try {
    const img = document.createElement('img');
    if (corsImage) img.crossOrigin = 'anonymous';
    const done = loaded(img);
    img.src = media.url;
    document.body.append(img);
    await done;
    let pixel = null;
    if (corsImage) {
      const canvas = document.createElement('canvas');
      canvas.width = img.naturalWidth;
      canvas.height = img.naturalHeight;
      const ctx = canvas.getContext('2d');
      ctx.drawImage(img, 0, 0);
      pixel = [...ctx.getImageData(0, 0, 1, 1).data];
    }
    // Authorization and Range make this a preflighted request; the exposed response headers are readable.
    const res = await fetch(`${api}${media.contentPath}`, { headers: { Authorization: `Bearer ${token}`, Range: 'bytes=0-7' } });
    const head = new Uint8Array(await res.arrayBuffer());
    return {
      ok: true,
      media,
      naturalWidth: img.naturalWidth,
      naturalHeight: img.naturalHeight,
      pixel,
      ranged: {
        status: res.status,
        etag: res.headers.get('ETag'),
        contentDisposition: res.headers.get('Content-Disposition'),
        contentRange: res.headers.get('Content-Range'),
        acceptRanges: res.headers.get('Accept-Ranges'),
        requestId: res.headers.get('X-Request-Id'),
        bytes: [...head],
      },
    };
  } catch (e) {
    return { ok: false, stage: 'display', media, error: `${e.name}: ${e.message}` };
  }
};
