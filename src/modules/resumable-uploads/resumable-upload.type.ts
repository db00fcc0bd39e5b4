import { Field, ID, ObjectType } from 'type-graphql';
import { DateTimeScalar, SafeIntScalar } from '../../graphql/scalars.js';
import { Media } from '../media/media.type.js';

@ObjectType({ description: 'A resumable (tus 1.0) upload of the caller\'s tenant, made at /uploads/resumable: how far it is, and the media it became.' })
export class ResumableUpload {
  @Field(() => ID, { description: 'The upload id: the last segment of its tus upload URL (Location).' })
  id!: string;

  @Field(() => SafeIntScalar, { description: 'Bytes stored so far: where the next PATCH starts (a HEAD answers it as Upload-Offset).' })
  offset!: number;

  @Field(() => SafeIntScalar, { description: 'The upload\'s size (Upload-Length, fixed at creation).' })
  length!: number;

  @Field(() => DateTimeScalar, { description: 'When the upload expires: an unfinished one is refused from then on (410) and its bytes are swept; a finished one is forgotten (its media stays).' })
  expiresAt!: Date;

  @Field(() => Media, { nullable: true, description: 'The media the upload became once its last byte arrived and passed the checks; null before (and once that media is deleted).' })
  media!: Media | null;
}
