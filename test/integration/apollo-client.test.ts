import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApolloClient, InMemoryCache, ServerError } from '@apollo/client';
import UploadHttpLink from 'apollo-upload-client/UploadHttpLink.mjs';
import { AssignRoleDocument, MediaByRoleDocument, MediaDocument, MediaLibraryDocument, SearchByTagsDocument, UploadDocument } from '../generated/graphql.js';
import { startTestApp, newTenant, type TestApp } from '../helpers/app.js';
import { jpeg, sha256Hex } from '../helpers/files.js';

/**
 * A browser-style client: Apollo Client 4 with apollo-upload-client's terminating
 * link (GraphQL multipart requests for files), the CSRF preflight header Apollo
 * Server requires for multipart, and a Bearer token.
 */
let app: TestApp;
beforeAll(async () => {
  app = await startTestApp();
});
afterAll(() => app?.close());

function client(headers: Record<string, string>): ApolloClient {
  return new ApolloClient({
    cache: new InMemoryCache({
      typePolicies: {
        // An entity is identified by type and id together; lists of a media are replaced, not merged.
        Entity: { keyFields: ['type', 'id'] },
        Media: { fields: { roles: { merge: false }, entities: { merge: false }, variants: { merge: false } } },
      },
    }),
    link: new UploadHttpLink({ uri: `${app.url}/graphql`, headers }),
  });
}

async function download(url: string, headers: Record<string, string> = {}): Promise<{ status: number; type: string | null; body: Buffer }> {
  const res = await fetch(url, { headers });
  return { status: res.status, type: res.headers.get('content-type'), body: Buffer.from(await res.arrayBuffer()) };
}

describe('Apollo Client + apollo-upload-client', () => {
  it('uploads, searches, moves a role and downloads byte-identical content', async () => {
    const tenant = newTenant('ac');
    const token = await app.token(tenant, { subject: 'browser-user' });
    const apollo = client({ 'Apollo-Require-Preflight': 'true', authorization: `Bearer ${token}` });
    const entity = { type: 'property', id: 'ac-1' };

    const firstFile = await jpeg(900, 600, 'front.jpg');
    const firstSha = await sha256Hex(firstFile);
    const up1 = await apollo.mutate({
      mutation: UploadDocument,
      variables: { input: { file: firstFile, entity, tags: ['Kitchen', 'sunny,bright'], role: 'PRIMARY_PHOTO' } },
    });
    const first = up1.data!.upload;
    expect(first).toMatchObject({
      fileName: 'front.jpg',
      mediaType: 'image/jpeg',
      kind: 'IMAGE',
      fileSize: firstFile.size,
      checksum: firstSha,
      tags: ['kitchen', 'sunny', 'bright'],
      width: 900,
      height: 600,
      createdBy: 'browser-user',
      entities: [entity],
      roles: [{ role: 'PRIMARY_PHOTO', entity }],
    });

    // Found by its tags (normalised on the way in), with both match modes.
    const found = await apollo.query({ query: SearchByTagsDocument, variables: { tags: ['KITCHEN', 'bright'], matchAll: true }, fetchPolicy: 'network-only' });
    expect(found.data?.searchByTags.nodes.map((n) => n.id)).toEqual([first.id]);
    expect(found.data?.searchByTags.totalCount).toBe(1);
    const none = await apollo.query({ query: SearchByTagsDocument, variables: { tags: ['kitchen', 'garden'], matchAll: true }, fetchPolicy: 'network-only' });
    expect(none.data?.searchByTags.totalCount).toBe(0);

    // A second upload takes the PRIMARY_PHOTO role through assignRole.
    const secondFile = await jpeg(300, 200, 'back.jpg');
    const second = (await apollo.mutate({ mutation: UploadDocument, variables: { input: { file: secondFile, entity, tags: ['garden'] } } })).data!.upload;
    expect(second.roles).toEqual([]);
    const moved = (await apollo.mutate({ mutation: AssignRoleDocument, variables: { entity, mediaId: second.id, role: 'PRIMARY_PHOTO' } })).data!.assignRole;
    expect(moved).toMatchObject({ role: 'PRIMARY_PHOTO', entity, media: { id: second.id, version: 2 } });
    const holder = await apollo.query({ query: MediaByRoleDocument, variables: { entity, role: 'PRIMARY_PHOTO' }, fetchPolicy: 'network-only' });
    expect(holder.data?.mediaByRole?.id).toBe(second.id);
    const firstNow = await apollo.query({ query: MediaDocument, variables: { id: first.id }, fetchPolicy: 'network-only' });
    expect(firstNow.data?.media?.roles).toEqual([]);
    expect(firstNow.data?.media?.entities).toMatchObject([entity]);

    // The first one downloads byte-identical through its signed url (no credentials)...
    expect(first.url).toEqual(expect.any(String));
    const viaUrl = await download(first.url!);
    expect(viaUrl.status).toBe(200);
    expect(viaUrl.type).toBe('image/jpeg');
    expect(viaUrl.body.length).toBe(firstFile.size);
    expect(await sha256Hex(viaUrl.body)).toBe(firstSha);

    // ...and through contentPath with the Bearer token, which it needs.
    expect(first.contentPath).toBe(`/media/${first.id}/content`);
    const viaPath = await download(`${app.url}${first.contentPath}`, { authorization: `Bearer ${token}` });
    expect(viaPath.status).toBe(200);
    expect(viaPath.type).toBe('image/jpeg');
    expect(await sha256Hex(viaPath.body)).toBe(firstSha);
    expect(viaPath.body.equals(Buffer.from(await firstFile.arrayBuffer()))).toBe(true);
    expect((await download(`${app.url}${first.contentPath}`)).status).toBe(401);

    // The second one is a different file.
    const secondBody = await download(`${app.url}${second.contentPath}`, { authorization: `Bearer ${token}` });
    expect(await sha256Hex(secondBody.body)).toBe(await sha256Hex(secondFile));
    expect(second.checksum).not.toBe(firstSha);
  });

  it('needs the Apollo-Require-Preflight header for uploads (CSRF prevention)', async () => {
    const tenant = newTenant('ac');
    const token = await app.token(tenant);
    const apollo = client({ authorization: `Bearer ${token}` });
    const file = await jpeg(32, 32, 'csrf.jpg');
    const error = await apollo.mutate({ mutation: UploadDocument, variables: { input: { file, entity: { type: 'property', id: 'ac-2' } } } }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(ServerError.is(error)).toBe(true);
    expect((error as ServerError).statusCode).toBe(400);
    expect((error as ServerError).bodyText).toMatch(/Cross-Site Request Forgery.*Apollo-Require-Preflight/);
    // Nothing was stored.
    const withHeader = client({ 'Apollo-Require-Preflight': 'true', authorization: `Bearer ${token}` });
    const library = await withHeader.query({ query: MediaLibraryDocument, variables: {}, fetchPolicy: 'network-only' });
    expect(library.data?.mediaLibrary.total).toBe(0);
    expect(await app.services.storage.list(`${tenant}/`)).toEqual([]);
  });
});
