-- GIS: cadastral parcels, and the horeca permits drawn on them.
-- Runs as gis_owner in one transaction; row counts come from estate.* settings.

create schema horeca;
comment on schema horeca is 'Horecavergunningen';

create table parcels (
    id integer generated always as identity primary key,
    kadastrale_aanduiding text not null unique,
    sectie char(1) not null,
    perceelnummer integer not null,
    oppervlakte_m2 numeric(12, 2) not null,
    centroid point not null,
    grens polygon not null,
    tags text[] not null default '{}',
    kenmerken jsonb not null default '{}',
    gewijzigd_op timestamptz not null
);
comment on table parcels is 'Kadastrale percelen (BRK)';

create table horeca."café" (
    id serial primary key,
    naam text not null,
    "Straatnaam" text not null,
    huisnummer integer not null,
    terras_m2 numeric(8, 2),
    perceel_id integer references parcels (id),
    vergunning_tot date
);
comment on table horeca."café" is 'Cafés met een terrasvergunning';

create view horeca.terrassen as
    select c.naam, c."Straatnaam", c.huisnummer, c.terras_m2, p.kadastrale_aanduiding
    from horeca."café" c left join parcels p on p.id = c.perceel_id
    where c.terras_m2 > 0;

create function parcel_area_total(p_sectie char) returns numeric language sql stable as $$
    select coalesce(sum(oppervlakte_m2), 0) from parcels where sectie = p_sectie
$$;

insert into parcels (kadastrale_aanduiding, sectie, perceelnummer, oppervlakte_m2, centroid, grens, tags, kenmerken, gewijzigd_op)
select 'WKD00-' || chr(65 + i % 12) || '-' || i,
       chr(65 + i % 12),
       i,
       round((50 + (i * 37) % 5000)::numeric + (i % 100) / 100.0, 2),
       point(120000 + (i % 1000) * 10.5, 420000 + (i / 1000) * 10.5),
       polygon(box(point(120000 + (i % 1000) * 10.5 - 5, 420000 + (i / 1000) * 10.5 - 5),
                   point(120000 + (i % 1000) * 10.5 + 5, 420000 + (i / 1000) * 10.5 + 5))),
       case i % 4 when 0 then '{bebouwd}'::text[] when 1 then '{agrarisch,polder}'::text[] when 2 then '{water}'::text[] else '{}'::text[] end,
       jsonb_build_object('bestemming', (array['wonen', 'agrarisch', 'bedrijf', 'natuur'])[1 + i % 4], 'bouwjaar', 1900 + i % 120),
       timestamptz '2010-01-01 00:00:00+01' + i * interval '29 minutes'
from generate_series(1, current_setting('estate.parcels')::int) as i;

insert into horeca."café" (naam, "Straatnaam", huisnummer, terras_m2, perceel_id, vergunning_tot)
select (array['Café de Biesbosch', 'Eetcafé ''t Sas', 'Café Hollands Diep', 'Brasserie Noëlla'])[1 + i % 4] || ' ' || i,
       (array['Hoofdstraat', 'Sasdijk', 'Lijnbaan'])[1 + i % 3],
       1 + i % 120,
       case when i % 3 = 0 then null else (i % 80)::numeric end,
       case when i <= current_setting('estate.parcels')::int then i end,
       date '2025-12-31' + i % 700
from generate_series(1, current_setting('estate.cafes')::int) as i;

grant usage on schema public, horeca to gis_app;
grant select, insert, update, delete on all tables in schema public, horeca to gis_app;
grant usage, select on all sequences in schema public, horeca to gis_app;
