"""The synthetic world's topic vocabulary: MIND-style categories, subcategories and the words that carry them.

Titles and abstracts are drawn from these lists, so an article's text alone predicts who will like it.
"""
from __future__ import annotations

# category -> subcategory -> topic words. Category-level words are shared by all its subcategories.
TOPICS: dict[str, dict[str, list[str]]] = {
    "news": {
        "_": ["report", "officials", "announced", "statement", "investigation", "public", "government"],
        "newspolitics": ["senate", "election", "ballot", "congress", "governor", "campaign", "vote", "bill",
                         "democrats", "republicans", "lawmakers", "policy"],
        "newsworld": ["embassy", "diplomats", "border", "summit", "treaty", "refugees", "minister", "sanctions",
                      "ceasefire", "parliament", "foreign", "united nations"],
        "newscrime": ["police", "suspect", "arrested", "court", "jury", "sheriff", "robbery", "trial",
                      "detectives", "charged", "prison", "verdict"],
        "newsscienceandtechnology": ["researchers", "software", "satellite", "robot", "artificial",
                                     "intelligence", "chip", "laboratory", "nasa", "quantum", "startup", "app"],
        "newsus": ["county", "residents", "city council", "school board", "mayor", "highway", "community",
                   "veterans", "firefighters", "downtown", "neighborhood", "volunteers"],
    },
    "sports": {
        "_": ["season", "coach", "fans", "game", "team", "win", "players"],
        "football_nfl": ["quarterback", "touchdown", "nfl", "linebacker", "super bowl", "playoffs",
                         "receiver", "draft", "end zone", "kickoff", "fumble", "interception"],
        "basketball_nba": ["nba", "dunk", "point guard", "rebounds", "three pointer", "lakers", "celtics",
                           "free throw", "assists", "buzzer", "court", "rookie"],
        "baseball_mlb": ["pitcher", "home run", "inning", "mlb", "bullpen", "world series", "shortstop",
                         "strikeout", "yankees", "dodgers", "batting", "outfield"],
        "soccer": ["striker", "goalkeeper", "premier league", "penalty", "midfielder", "champions league",
                   "world cup", "offside", "header", "transfer", "derby", "pitch"],
        "golf": ["birdie", "fairway", "masters", "putt", "bogey", "pga", "green", "caddie", "tee", "eagle",
                 "clubhouse", "par"],
    },
    "finance": {
        "_": ["money", "dollars", "economy", "investors", "billion", "price", "growth"],
        "markets": ["stocks", "dow", "nasdaq", "bonds", "rally", "wall street", "earnings", "shares",
                    "inflation", "fed", "interest rates", "traders"],
        "personalfinance": ["retirement", "savings", "budget", "credit card", "taxes", "401k", "debt",
                            "mortgage", "paycheck", "social security", "insurance", "emergency fund"],
        "realestate": ["housing", "home prices", "listing", "realtor", "rent", "condo", "buyers", "sellers",
                       "square feet", "property", "landlord", "open house"],
        "companies": ["ceo", "merger", "layoffs", "quarterly", "revenue", "acquisition", "startup",
                      "shareholders", "profit", "retailer", "factory", "brand"],
    },
    "health": {
        "_": ["doctors", "study", "patients", "health", "risk", "body", "experts"],
        "medical": ["vaccine", "cancer", "hospital", "surgery", "virus", "diagnosis", "treatment",
                    "clinical trial", "symptoms", "flu", "disease", "nurses"],
        "fitness": ["workout", "exercise", "running", "gym", "strength", "cardio", "yoga", "squats",
                    "marathon", "stretching", "muscle", "trainer"],
        "nutrition": ["diet", "protein", "sugar", "vitamins", "calories", "weight loss", "fiber", "keto",
                      "breakfast", "snacks", "hydration", "vegetables"],
        "mentalhealth": ["anxiety", "stress", "therapy", "depression", "sleep", "mindfulness", "burnout",
                         "loneliness", "therapist", "meditation", "mood", "wellbeing"],
    },
    "lifestyle": {
        "_": ["life", "tips", "home", "family", "style", "ideas", "simple"],
        "parenting": ["kids", "toddler", "parents", "teenagers", "school", "baby", "bedtime", "homework",
                      "daycare", "siblings", "moms", "dads"],
        "homeandgarden": ["garden", "kitchen", "renovation", "plants", "backyard", "decor", "furniture",
                          "cleaning", "tomatoes", "patio", "paint", "closet"],
        "fashion": ["dress", "sneakers", "designer", "runway", "jeans", "jacket", "outfit", "handbag",
                    "trend", "boots", "wardrobe", "vintage"],
        "pets": ["dog", "cat", "puppy", "kitten", "veterinarian", "shelter", "adoption", "leash", "breed",
                 "rescue", "paws", "pet food"],
    },
    "entertainment": {
        "_": ["star", "fans", "famous", "hollywood", "show", "new", "stunning"],
        "celebrity": ["actress", "singer", "red carpet", "divorce", "wedding", "engaged", "instagram",
                      "paparazzi", "royal", "duchess", "rapper", "interview"],
        "gaming": ["video game", "console", "playstation", "xbox", "nintendo", "esports", "gamers",
                   "multiplayer", "trailer", "level", "controller", "studio"],
        "books": ["novel", "author", "bestseller", "memoir", "publisher", "library", "chapter", "poetry",
                  "fiction", "book club", "bookstore", "reading"],
    },
    "foodanddrink": {
        "_": ["food", "delicious", "taste", "eat", "menu", "flavor", "cook"],
        "recipes": ["recipe", "casserole", "baking", "oven", "pasta", "soup", "chicken", "dessert",
                    "slow cooker", "cookies", "sauce", "dinner"],
        "restaurants": ["restaurant", "chef", "diner", "takeout", "brunch", "pizza", "burger", "drive thru",
                        "reservation", "michelin", "fast food", "waiter"],
        "wine": ["wine", "vineyard", "cocktail", "bourbon", "brewery", "beer", "sommelier", "whiskey",
                 "champagne", "bartender", "tasting", "cellar"],
    },
    "travel": {
        "_": ["trip", "travel", "vacation", "visit", "world", "tourists", "journey"],
        "destinations": ["beach", "island", "resort", "national park", "hotel", "cruise", "paris", "tokyo",
                         "mountains", "landmark", "sightseeing", "coast"],
        "airlines": ["flight", "airport", "airline", "passengers", "delay", "boarding", "pilot",
                     "frequent flyer", "security line", "baggage", "runway", "first class"],
        "adventure": ["hiking", "camping", "trail", "kayak", "backpacking", "summit", "wilderness", "canyon",
                      "road trip", "safari", "glacier", "expedition"],
    },
    "autos": {
        "_": ["car", "drivers", "vehicle", "road", "model", "engine", "miles"],
        "cars": ["sedan", "suv", "pickup truck", "horsepower", "dealership", "recall", "toyota", "ford",
                 "honda", "test drive", "mpg", "transmission"],
        "electricvehicles": ["electric", "battery", "charging", "tesla", "ev", "range", "charger",
                             "plug in", "hybrid", "autopilot", "kilowatt", "emissions"],
        "motorsport": ["nascar", "formula one", "race", "driver", "grand prix", "pit stop", "lap",
                       "qualifying", "podium", "indy", "circuit", "checkered flag"],
    },
    "weather": {
        "_": ["weather", "forecast", "temperatures", "week", "region", "warning", "conditions"],
        "storms": ["hurricane", "tornado", "blizzard", "snowstorm", "flooding", "thunderstorm", "winds",
                   "power outages", "evacuation", "landfall", "hail", "storm surge"],
        "climate": ["climate", "drought", "wildfire", "heat wave", "record high", "glaciers", "carbon",
                    "sea level", "rainfall", "warming", "arctic", "el nino"],
    },
    "tv": {
        "_": ["episode", "series", "season", "viewers", "network", "premiere", "cast"],
        "tvshows": ["sitcom", "finale", "talk show", "reality", "late night", "host", "spinoff", "drama",
                    "showrunner", "ratings", "renewed", "canceled"],
        "streaming": ["netflix", "hulu", "subscribers", "binge", "streaming", "disney plus", "documentary",
                      "miniseries", "original", "subscription", "stream", "watchlist"],
    },
    "movies": {
        "_": ["movie", "film", "director", "cinema", "box office", "screen", "actor"],
        "movienews": ["sequel", "casting", "trailer", "franchise", "blockbuster", "remake", "superhero",
                      "oscar", "studio", "release date", "marvel", "premiere"],
        "reviews": ["review", "critics", "masterpiece", "plot", "performance", "rating", "verdict",
                    "disappointing", "brilliant", "screenplay", "soundtrack", "stars"],
    },
}

# Words with no topic: they make the text natural and carry no signal.
GENERAL_WORDS = [
    "the", "new", "how", "why", "what", "this", "after", "first", "best", "biggest", "could", "will", "now",
    "just", "more", "here", "year", "today", "week", "says", "people", "time", "big", "top", "things", "know",
    "need", "look", "finally", "surprising", "real", "inside", "latest", "ever", "every", "about", "before",
    "makes", "gets", "shows", "back", "again", "still", "may", "long", "small", "last", "major", "simple",
]

TITLE_TEMPLATES = [
    "{A} {b} {c}: {d} {e}",
    "Why {a} {b} {c} {d}",
    "{A} {b} and {c} {d} {e}",
    "How {a} {b} {c} {d} {e}",
    "\"{A} {b}\" {c} {d}",
    "{A} {b}'s {c} {d} {e} {f}",
    "{A} {b} {c} {d} {e}",
    "The {a} {b} {c} everyone's talking about",
]


def subcategory_list() -> list[tuple[str, str]]:
    """All (category, subcategory) pairs in a fixed order: the axes of users' interest vectors."""
    return [(cat, sub) for cat, subs in TOPICS.items() for sub in subs if sub != "_"]
