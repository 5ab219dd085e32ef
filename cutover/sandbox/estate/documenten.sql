-- Zaaksysteem's document store: documents as bytea, a few scanned originals as large objects.
-- Runs as zaaksysteem_owner in one transaction; row counts come from estate.* settings.

create table documents (
    id bigserial primary key,
    zaaknummer text not null,
    bestandsnaam text not null,
    mime_type text not null,
    inhoud bytea not null,
    sha256 bytea generated always as (sha256(inhoud)) stored,
    created_at timestamptz not null
);
-- The contents do not compress; do not spend the time trying.
alter table documents alter column inhoud set storage external;
comment on table documents is 'Documenten bij zaken';
comment on column documents.sha256 is 'Gegenereerd: controlegetal van de inhoud';

create table scanned_originals (
    id integer primary key,
    omschrijving text not null,
    origineel oid not null
);
comment on table scanned_originals is 'Gescande originelen, als large objects';

-- 2 to 16 KB per document, made of sha256 blocks so it does not compress.
insert into documents (zaaknummer, bestandsnaam, mime_type, inhoud, created_at)
select 'Z-' || lpad((100000 + i % 50000)::text, 8, '0'),
       'document-' || i || (array['.pdf', '.docx', '.png', '.msg'])[1 + i % 4],
       (array['application/pdf', 'application/vnd.openxmlformats-officedocument.wordprocessingml.document', 'image/png', 'application/vnd.ms-outlook'])[1 + i % 4],
       (select string_agg(sha256(int8send(i::bigint * 1000 + j)), ''::bytea order by j)
          from generate_series(1, 64 + (i % 8) * 64) as j),
       timestamptz '2016-03-01 10:00:00+01' + i * interval '2 hours'
from generate_series(1, current_setting('estate.documents')::int) as i;

insert into scanned_originals (id, omschrijving, origineel)
select k, 'Scan ' || k,
       lo_from_bytea(0, (select string_agg(sha256(int8send(k::bigint * 100000 + j)), ''::bytea order by j)
                           from generate_series(1, 512) as j))
from generate_series(1, 3) as k;

grant usage on schema public to zaaksysteem_app;
grant select, insert, update, delete on all tables in schema public to zaaksysteem_app;
grant usage, select on all sequences in schema public to zaaksysteem_app;
