"""Paraphrase sets the content-gaps clustering threshold was calibrated on
(``hub.reports.gaps.CLUSTER_SIMILARITY``); the report's own test uses other sets.

Measured with all-MiniLM-L6-v2 (``PYTHONPATH=. python -m tests.hub.gap_paraphrases``),
the figures recorded in ``hub.reports.gaps``'s docstring.
"""

from __future__ import annotations

SETS: dict[str, list[str]] = {
    "gift-wrap": [
        "do you offer gift wrapping",
        "can you gift wrap my order",
        "is gift wrap available",
        "can I get the parcel wrapped as a present",
        "how do I add gift wrapping at checkout",
        "do you wrap presents",
        "gift wrapping option?",
        "could my order come wrapped as a gift",
        "is there a gift wrap service",
        "can you put it in gift paper",
    ],
    "student-discount": [
        "is there a student discount",
        "do students get money off",
        "student pricing?",
        "can I get a discount as a student",
        "do you do reduced prices for university students",
        "any deals for students",
        "I'm a student, is there a cheaper rate",
        "how do I claim the student discount",
        "do you accept student cards for a discount",
        "discount for college students",
    ],
    "invoice-vat": [
        "can I get a VAT invoice",
        "I need an invoice with VAT for my company",
        "how do I download a tax invoice",
        "where is my invoice",
        "please send me a receipt with the VAT number",
        "can you add my company name to the invoice",
        "invoice for business expenses",
        "I need a proper invoice for accounting",
        "how to get an invoice for my purchase",
        "does the receipt show VAT",
    ],
    "pet-friendly-store": [
        "can I bring my dog into the shop",
        "are dogs allowed in your stores",
        "is your store pet friendly",
        "may I come in with my puppy",
        "do you allow pets inside",
        "can my dog come shopping with me",
        "dogs welcome in store?",
        "are animals permitted in the shop",
        "can I walk in with my dog on a lead",
        "pet policy in your stores",
    ],
    "warranty-claim": [
        "my jacket zip broke, is it under warranty",
        "how do I make a warranty claim",
        "the sole came off my boots after two months",
        "what does the guarantee cover",
        "item broke, can I get it repaired for free",
        "warranty on tents",
        "how long is the warranty",
        "my backpack strap snapped, what can you do",
        "is manufacturing fault covered",
        "my product is defective",
    ],
}


def main() -> None:
    import numpy as np

    from knowledge_base.embeddings import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder()
    embedder.load()
    vectors = {name: embedder.embed_documents(texts) for name, texts in SETS.items()}
    centroids = {}
    for name, v in vectors.items():
        c = v.mean(axis=0)
        centroids[name] = c / np.linalg.norm(c)
    for name, v in vectors.items():
        own = v @ centroids[name]
        other = max(float((v @ centroids[o]).max()) for o in vectors if o != name)
        print(f"{name:20} own centroid min {own.min():.3f} median {np.median(own):.3f}; other centroid max {other:.3f}")
    from hub.reports.gaps import cluster

    labels = [name for name, texts in SETS.items() for _ in texts]
    every = np.vstack(list(vectors.values()))
    order = np.random.default_rng(0).permutation(len(labels))  # the greedy pass depends on order
    for threshold in (0.4, 0.45, 0.5, 0.55, 0.6, 0.65):
        groups = cluster(every[order], [1] * len(labels), threshold)
        mixed = sum(1 for g in groups if len({labels[order[i]] for i in g}) > 1)
        largest = {name: max(sum(1 for i in g if labels[order[i]] == name) for g in groups) for name in SETS}
        print(
            f"threshold {threshold}: {len(groups)} clusters for {len(SETS)} sets, {mixed} mixed, largest per set {largest}"
        )


if __name__ == "__main__":
    main()
